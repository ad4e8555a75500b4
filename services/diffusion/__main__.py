"""`python -m services.diffusion`: serve the diffusion stage (settings from VTON_* environment variables)."""

import sys

from services.diffusion.service import build_server
from vton.runtime.server import main
from vton.runtime.vocab import Stage

sys.exit(main(Stage.DIFFUSION, build_server))
