"""`python -m services.pose`: serve the pose stage (settings from VTON_* environment variables)."""

import sys

from services.pose.service import build_server
from vton.runtime.server import main
from vton.runtime.vocab import Stage

sys.exit(main(Stage.POSE, build_server))
