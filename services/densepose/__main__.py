"""`python -m services.densepose`: serve the densepose stage (settings from VTON_* environment variables)."""

import sys

from services.densepose.service import build_server
from vton.runtime.server import main
from vton.runtime.vocab import Stage

sys.exit(main(Stage.DENSEPOSE, build_server))
