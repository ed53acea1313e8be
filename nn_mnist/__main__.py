import sys

from nn_mnist.cli import main

sys.exit(main())
