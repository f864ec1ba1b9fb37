-- test_cli: a script that fails at top level (cosockd exits 1, error logged).
local function inner()
   error("deliberate top-level failure")
end
inner()
