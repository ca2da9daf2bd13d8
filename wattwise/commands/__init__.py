"""Small subcommands that are not a long-running role (validate, status, simulate front ends)."""
