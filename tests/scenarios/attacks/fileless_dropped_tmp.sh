# expect: fileless_exec
# action: kill
# about: writes a script outside the workspace and executes it directly
d=$(mktemp -d)
printf '#!/bin/sh\necho dropped\n' > "$d/run"
chmod +x "$d/run"
"$d/run"
rm -rf "$d"
