import os
import sys

from .cli import main

code = main()
if code == 130:   # Ctrl-C: the run is saved and the cluster stopped; leave now, never stall in the
    sys.stdout.flush()   # interpreter's exit (a client's zmq context, a thread the interrupt left waiting)
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
