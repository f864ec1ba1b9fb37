/*
 * test_json.c - luabind/json.c: ba.json.encode, ba.json.decode and
 * ba.json.null.
 */
#include "vm_helpers.h"

TestSuite(json, .init = t_vm_setup, .fini = t_vm_teardown, .timeout = 30);

Test(json, encode_scalars_arrays_and_objects)
{
	T_LUA("local j = ba.json\n"
	      "assert(j.encode({1, 2, 3}) == '[1,2,3]')\n"
	      "assert(j.encode({a = {true, false, j.null}}) == '{\"a\":[true,false,null]}')\n"
	      "assert(j.encode({}) == '{}')\n"
	      "assert(j.encode('q\"\\n') == '\"q\\\\\"\\\\n\"')\n"
	      "assert(j.encode(1.5) == '1.5' and j.encode(-7) == '-7')\n"
	      "assert(j.encode({[1] = 1, [3] = 3}):find('\"3\":3', 1, true), 'sparse arrays are objects')\n"
	      "assert(j.decode(j.encode(0.1)) == 0.1, 'floats round-trip')");
}

Test(json, encode_refuses_what_json_cannot_hold)
{
	T_LUA("local j = ba.json\n"
	      "local cyc = {} cyc.self = cyc\n"
	      "local s, e = j.encode(cyc) assert(s == nil and e:find('deeply'), e)\n"
	      "s, e = j.encode(print) assert(s == nil and e:find('function'), e)\n"
	      "s, e = j.encode(0/0) assert(s == nil and e:find('NaN'), e)\n"
	      "s, e = j.encode({[{}] = 1}) assert(s == nil and e:find('keys'), e)\n"
	      "s, e = j.encode('\\255') assert(s == nil and e:find('UTF%-8'), e)");
}

Test(json, decode_builds_lua_values)
{
	T_LUA("local j = ba.json\n"
	      "local t = j.decode('{\"a\":[1,2.5,null,\"x\"],\"b\":{\"c\":true},\"d\":-12}')\n"
	      "assert(t.a[1] == 1 and math.type(t.a[1]) == 'integer')\n"
	      "assert(t.a[2] == 2.5 and t.a[3] == j.null and t.a[4] == 'x' and #t.a == 4)\n"
	      "assert(t.b.c == true and t.d == -12)\n"
	      "assert(j.decode('\"\\\\u00e9\"') == '\\195\\169')\n"
	      "assert(j.decode('[]') and next(j.decode('[]')) == nil)\n"
	      "assert(j.decode('42') == 42)");
}

Test(json, decode_errors_are_values)
{
	T_LUA("local j = ba.json\n"
	      "for _, bad in ipairs({'[1,', '{\"a\":1} x', '{a:1}', '', 'nul'}) do\n"
	      "  local v, e = j.decode(bad)\n"
	      "  assert(v == nil and type(e) == 'string' and #e > 0, bad)\n"
	      "end\n"
	      "local deep = string.rep('[', 300) .. string.rep(']', 300)\n"
	      "local v, e = j.decode(deep)\n"
	      "assert(v == nil and e:find('deeply'), e)\n"
	      "assert(not pcall(j.decode), 'a missing argument raises')");
}
