"""Regenerate the Python wire code from proto/chargeback/v1/usage.proto.

Deterministic: same .proto and same grpcio-tools give byte-identical output.
`--check` exits non-zero when the checked-in code is stale (used by a test).
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto" / "ai_chargeback_proto"
PROTO_FILE = "chargeback/v1/usage.proto"
GENERATED = ("usage_pb2.py", "usage_pb2_grpc.py", "usage_pb2.pyi")
# grpc_tools writes an absolute import of the proto path; the package is
# installed under ai_chargeback_proto, so make it relative.
ABSOLUTE_IMPORT = "from chargeback.v1 import usage_pb2"
RELATIVE_IMPORT = "from . import usage_pb2"


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc

    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO_ROOT / PROTO_FILE),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    grpc_file = out_dir / "chargeback" / "v1" / "usage_pb2_grpc.py"
    grpc_file.write_text(grpc_file.read_text().replace(ABSOLUTE_IMPORT, RELATIVE_IMPORT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if checked-in code is stale")
    args = parser.parse_args()
    target = PROTO_ROOT / "chargeback" / "v1"
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh = Path(tmp) / "chargeback" / "v1"
        stale = []
        for name in GENERATED:
            new = (fresh / name).read_text()
            current_path = target / name
            current = current_path.read_text() if current_path.exists() else ""
            if new != current:
                stale.append(name)
                if args.check:
                    sys.stdout.writelines(
                        difflib.unified_diff(
                            current.splitlines(True), new.splitlines(True), f"checked-in/{name}", f"fresh/{name}", n=1
                        )
                    )
                else:
                    current_path.write_text(new)
    if args.check and stale:
        print(f"stale generated code: {', '.join(stale)}; run `make proto`", file=sys.stderr)
        return 1
    if not args.check:
        print("generated:", ", ".join(GENERATED))
    return 0


if __name__ == "__main__":
    sys.exit(main())
