"""Python code for weft's contracts, generated from `proto/` with grpcio-tools each time
it is imported (into a temporary directory), so it can never drift from them."""

import atexit
import pathlib
import shutil
import sys
import tempfile

import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto"


def generate() -> pathlib.Path:
    out = pathlib.Path(tempfile.mkdtemp(prefix="weft-python-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    files = sorted(str(p.relative_to(PROTO)) for p in PROTO.glob("**/*.proto"))
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    code = protoc.main(
        ["grpc_tools.protoc", f"-I{PROTO}", f"-I{well_known}",
         f"--python_out={out}", f"--grpc_python_out={out}", *files]
    )
    if code != 0:
        raise SystemExit(f"protoc failed ({code}) on {PROTO}")
    sys.path.insert(0, str(out))
    return out


generate()
