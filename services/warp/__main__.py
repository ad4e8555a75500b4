"""`python -m services.warp`: serve the warp stage (settings from VTON_* environment variables)."""

import sys

from services.warp.service import build_server
from vton.runtime.server import main
from vton.runtime.vocab import Stage

sys.exit(main(Stage.WARP, build_server))
