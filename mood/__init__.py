"""mood: masked image modeling for out-of-distribution detection.

Pipeline: data -> pretrain -> fine-tune -> features -> score -> metrics -> book.
See README.md for where each step lives.
"""

__version__ = "0.1.0"
