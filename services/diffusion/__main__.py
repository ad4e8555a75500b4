"""`python -m services.diffusion`: serve the diffusion stage (settings from VTON_* environment variables)."""

import sys

from services.diffusion.service import build_server
from vton.runtime.server import main

sys.exit(main("diffusion", build_server))
