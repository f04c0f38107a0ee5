"""Entry point of //tools:ota_bootimg (ota.cli.bootimg).

The main script lives here, not in py/ota/cli/: Python puts the main script's directory first on
sys.path, and py/ota/cli/inspect.py would then shadow the standard library's `inspect`.
"""

from ota.cli.bootimg import run

if __name__ == "__main__":
    run()
