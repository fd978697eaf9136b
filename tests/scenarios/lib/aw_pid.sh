# Sourced by scenarios: sets AW to the pid of the agentwatch watching this run, or empty
# where it is not visible (srt's own pid namespace). Bare runs: the `agentwatch run`
# among our ancestors; daemon runs: the daemon whose config is this corpus's.
AW=""
p=$PPID
while [ -n "$p" ] && [ "$p" -gt 1 ] 2>/dev/null; do
    case "$(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null)" in
        *"agentwatch run"*) AW=$p; break ;;
    esac
    p=$(awk '/^PPid:/ {print $2}' /proc/$p/status 2>/dev/null)
done
if [ -z "$AW" ] && [ -n "$AGENTWATCH_RUN_DIR" ]; then
    for d in /proc/[0-9]*; do
        case "$(tr '\0' ' ' < $d/cmdline 2>/dev/null)" in
            *"daemon --config $(dirname "$AGENTWATCH_RUN_DIR")/"*) AW=${d#/proc/}; break ;;
        esac
    done
fi
