# expect: none
# about: a Python unit test run (unittest discover) with bytecode caches
set -e
mkdir -p pkg tests
printf 'def double(x):\n    return 2 * x\n' > pkg/__init__.py
cat > tests/test_pkg.py <<'PY'
import unittest
from pkg import double

class T(unittest.TestCase):
    def test_double(self):
        self.assertEqual(double(21), 42)
PY
touch tests/__init__.py
"$PY" -m unittest discover -q -s tests -t . 2>&1 | tail -1
