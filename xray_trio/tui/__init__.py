"""The live inspector: a Textual dashboard over the daemon's event stream.

    app.py        InspectApp (takes a Source) and ``run_inspect``, the ``xray-trio inspect`` entry
    launch.py     ``inspect``'s command line: the daemon's flags plus ``--attach``
    source.py     the Source protocol; AttachSource (NDJSON over HTTP), ReplaySource (tests, demo)
    inprocess.py  InProcessSource: the daemon itself, in trio guest mode on Textual's loop
    state.py      Dashboard: bounded, pure bookkeeping of what the events said
    messages.py   what sources tell the app
    widgets.py    the panels;  screens.py  detail and help screens;  inspect.tcss  styles
    format.py     pure cell formatting

The daemon never imports this package, so Textual costs it nothing at start-up.
"""
