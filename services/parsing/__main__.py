"""`python -m services.parsing`: serve the parsing stage (settings from VTON_* environment variables)."""

import sys

from services.parsing.service import build_server
from vton.runtime.server import main
from vton.runtime.vocab import Stage

sys.exit(main(Stage.PARSING, build_server))
