# expect: write_outside_workspace
# action: alert
# about: edits a file in another project on the host
echo "// injected" >> "$PROJECTS/other-repo/README" 2>/dev/null || true
