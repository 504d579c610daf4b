"""``python -m xray_trio`` behaves exactly like the ``xray-trio`` command."""

from xray_trio.cli import main

if __name__ == "__main__":
    main()
