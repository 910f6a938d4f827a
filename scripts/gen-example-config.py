# Writes examples/warmpool.toml from the SETTINGS table of crates/server/src/config/settings.rs.
# Run from the repository root: python3 scripts/gen-example-config.py
import re, textwrap
src=open('crates/server/src/config/settings.rs').read()
rows=re.findall(r'^\s*(global|pool) "([A-Z_]+)", "([a-z-]+)", "([^"]*)", "((?:[^"\\]|\\.)*)";$',src,re.M)
out=['''# warmpool.toml: every setting with its default value.
#
#   warmpool serve --config examples/warmpool.toml
#   warmpool serve --config examples/warmpool.toml --check-config   # print the result
#
# Keys are the `serve` flags with _ for -. Flags and env vars (named in each
# comment) win over this file. The settings marked "per pool" configure the default
# pool here; a [pools.NAME] table takes them for another pool (see multi-pool.toml).
''']
def lit(v):
    if v in ("true","false"): return v
    if re.fullmatch(r'0|[1-9][0-9]*',v): return v
    if re.fullmatch(r'[0-9]+\.[0-9]+',v): return v
    return '"'+v+'"'
for scope,env,flag,default,help in rows:
    key=flag.replace('-','_')
    help=help.replace('\\"','"')
    c=textwrap.wrap(f"{help} ({env}{', per pool' if scope=='pool' else ''})",80,break_on_hyphens=False)
    out.append("\n".join("# "+l for l in c))
    if env.endswith("_TOKEN"):
        out.append(f'# {key} = "a-secret-of-16-or-more-characters"\n')
    elif env.startswith("WARMPOOL_SCALING_"):
        # Any of these turns scaling on; a [scaling] table takes them as min,
        # max, buffer, scale_down_delay, safety and locations.
        out.append(f"# {key} = {lit(default)}\n")
    else:
        out.append(f"{key} = {lit(default)}\n")
open('examples/warmpool.toml','w').write("\n".join(out))
