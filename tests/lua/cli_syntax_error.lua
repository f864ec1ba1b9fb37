-- test_cli: a script that does not compile.
local x = = 1
