"""Names that do not exist: a type checker must flag each (``tests/test_typing.py``). Never run."""

import embkit
from embkit import hub

embkit.reed("EasyNegative.pt")  # line 6: a typo of read
embkit.validate.validate  # line 7: validate is a function, not a module
hub.pul("someone/pack")  # line 8: a typo of pull
embkit.read(42)  # line 9: a path, not a number
