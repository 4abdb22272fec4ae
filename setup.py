"""Package layout only; all metadata lives in pyproject.toml.

The tree shows the data flow (plugin/ -> proto/ -> aggregator/) at the top
level, while the installed import names stay under one namespace so nothing
collides with other distributions (proto-plus also installs a top-level
`proto`). setuptools cannot express "find subpackages of a remapped folder" in
pyproject.toml, so it is computed here.
"""

from glob import glob

from setuptools import find_packages, setup

ROOTS = {
    "kong_ai_chargeback": "kong_ai_chargeback",
    "kong_ai_chargeback.plugin": "plugin",
    "kong_ai_chargeback.proto": "proto",
    "kong_ai_chargeback.aggregator": "aggregator",
}

packages: list[str] = []
package_dir: dict[str, str] = {}
for name, folder in ROOTS.items():
    package_dir[name] = folder
    packages.append(name)
    for sub in find_packages(where=folder):
        packages.append(f"{name}.{sub}")

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={
        "kong_ai_chargeback.aggregator": ["migrations/*.sql", "sql/*.sql"],
        "kong_ai_chargeback.proto": ["chargeback/v1/*.proto"],
    },
    # The governance SQL lives at the top of the tree (sql/governance/) for
    # analysts; installed copies go to <prefix>/share (aggregator/governance/base.py).
    data_files=[("share/kong-ai-chargeback/sql/governance", sorted(glob("sql/governance/*.sql")))],
)
