"""The Gradio app: `python app.py [--host H] [--port P] [--share]`, the same as `dream3d app`."""

import sys

from dream3d.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
