-- test_cli: returns at once with nothing pending (cosockd exits 0); shows
-- what the script was given, like the lua command does.
trace("args: " .. table.concat({...}, " "))
trace("arg[0]: " .. tostring(arg[0]))
trace("arg[1]: " .. tostring(arg[1]))
