package aggregates

// CodeUnknownCommand is the rejection code for a command whose type the
// aggregate type does not handle.
const CodeUnknownCommand = "unknown_command"

// UnknownCommand returns the rejection for a command Decide does not handle,
// for use in the default branch of its type switch.
func UnknownCommand(aggregateType string, cmd Command) *Rejection {
	if cmd == nil {
		return Reject(CodeUnknownCommand, "%s: nil command", aggregateType)
	}
	return Reject(CodeUnknownCommand, "%s: unknown command type %q (%T)", aggregateType, cmd.CommandType(), cmd)
}
