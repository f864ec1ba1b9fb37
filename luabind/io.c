/*
 * io.c - ba.openio(name): the small IO objects that certificate loading
 * uses. "disk" is the file system, "home" the working directory and "vm"
 * cosockd's state directory, which holds .certificate/MakoServer.pem and
 * .key: a self-signed certificate made on first use, so that scripts
 * written for the original product (whose "vm" IO is its own zip file)
 * find one there. Replace those two files to serve a real certificate.
 *
 * Methods: io:realpath(name), io:open(name [, mode]) (a Lua file),
 * io:stat(name) -> {size=, mtime=, type=}. Failures return nil, err.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "tls.h"

#define CS_IO_MT "_BAIO"
#define MAX_FILE_SIZE (16u << 20)

struct cs_io {
	char root[PATH_MAX]; /* "" for "disk" */
};

/* STATE_DIRECTORY (systemd; the first of a list), else the XDG state
 * directory, else /var/lib/cosockd. */
static const char *state_dir(cs_vm *vm)
{
	if (vm->state_dir)
		return vm->state_dir;
	char buf[PATH_MAX];
	const char *env = getenv("STATE_DIRECTORY"), *home = getenv("HOME"), *xdg = getenv("XDG_STATE_HOME");
	if (env && *env)
		snprintf(buf, sizeof(buf), "%.*s", (int)strcspn(env, ":"), env);
	else if (xdg && *xdg)
		snprintf(buf, sizeof(buf), "%s/cosockd", xdg);
	else if (home && *home && geteuid() != 0)
		snprintf(buf, sizeof(buf), "%s/.local/state/cosockd", home);
	else
		snprintf(buf, sizeof(buf), "/var/lib/cosockd");
	vm->state_dir = strdup(buf);
	return vm->state_dir;
}

void cs__io_free(cs_vm *vm)
{
	free(vm->state_dir);
	vm->state_dir = NULL;
}

static int mkdirs(const char *path, mode_t mode)
{
	char buf[PATH_MAX + 16];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(buf, mode) < 0 && errno != EEXIST ? -1 : 0;
}

static int write_file(const char *path, const char *data, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	size_t len = strlen(data);
	ssize_t n = write(fd, data, len);
	int r = n == (ssize_t)len && fsync(fd) == 0 ? 0 : -1;
	close(fd);
	if (r < 0)
		unlink(path);
	return r;
}

/* Make dir/.certificate/MakoServer.{pem,key} unless both exist. */
static void ensure_certificate(cs_vm *vm, const char *dir)
{
	char cdir[PATH_MAX + 16], pem[PATH_MAX + 48], key[PATH_MAX + 48];
	snprintf(cdir, sizeof(cdir), "%s/.certificate", dir);
	snprintf(pem, sizeof(pem), "%s/MakoServer.pem", cdir);
	snprintf(key, sizeof(key), "%s/MakoServer.key", cdir);
	if (access(pem, R_OK) == 0 && access(key, R_OK) == 0)
		return;
	char *cert_pem, *key_pem;
	if (mkdirs(cdir, 0700) < 0) {
		cs__log(vm, CS_LOG_WARNING, "tls: cannot create %s: %s", cdir, strerror(errno));
		return;
	}
	if (cs_tls_make_self_signed("localhost", 3650, &cert_pem, &key_pem) < 0) {
		cs__log(vm, CS_LOG_WARNING, "tls: cannot generate a self-signed certificate");
		return;
	}
	unlink(pem);
	unlink(key);
	if (write_file(key, key_pem, 0600) < 0 || write_file(pem, cert_pem, 0644) < 0)
		cs__log(vm, CS_LOG_WARNING, "tls: cannot write %s: %s", cdir, strerror(errno));
	else
		cs__log(vm, CS_LOG_NOTICE,
			"tls: generated a self-signed certificate for localhost in %s "
			"(put a real MakoServer.pem and MakoServer.key there to serve your own)",
			cdir);
	explicit_bzero(key_pem, strlen(key_pem));
	free(key_pem);
	free(cert_pem);
}

static int l_openio(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	cs_vm *vm = cs__vm(L);
	char root[PATH_MAX];
	if (!strcmp(name, "disk")) {
		root[0] = '\0';
	} else if (!strcmp(name, "home")) {
		if (!getcwd(root, sizeof(root)))
			return cs__fail(L, strerror(errno));
	} else if (!strcmp(name, "vm")) {
		snprintf(root, sizeof(root), "%s", state_dir(vm));
		ensure_certificate(vm, root);
	} else {
		lua_pushnil(L);
		return 1;
	}
	struct cs_io *io = lua_newuserdatauv(L, sizeof(*io), 0);
	memcpy(io->root, root, sizeof(root));
	luaL_setmetatable(L, CS_IO_MT);
	return 1;
}

bool cs__is_io(lua_State *L, int idx) { return luaL_testudata(L, idx, CS_IO_MT) != NULL; }

/* root + "/" + name into buf. */
static const char *full_path(const struct cs_io *io, const char *name, char *buf, size_t len)
{
	if (!io->root[0])
		snprintf(buf, len, "%s", name);
	else
		snprintf(buf, len, "%s/%s", io->root, name[0] == '/' ? name + 1 : name);
	return buf;
}

char *cs__io_read(lua_State *L, int idx, const char *name, size_t *len, const char **err)
{
	char path[PATH_MAX * 2];
	if (idx)
		full_path(luaL_checkudata(L, idx, CS_IO_MT), name, path, sizeof(path));
	else
		snprintf(path, sizeof(path), "%s", name);
	*err = "notfound";
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	char *buf = NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE_SIZE) {
		*err = "notafile";
		goto out;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		*err = "malloc";
		goto out;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0) {
			*err = "ioerror";
			free(buf);
			buf = NULL;
			goto out;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	*len = got;
	*err = NULL;
out:
	close(fd);
	return buf;
}

static int m_realpath(lua_State *L)
{
	struct cs_io *io = luaL_checkudata(L, 1, CS_IO_MT);
	char path[PATH_MAX * 2], real[PATH_MAX];
	full_path(io, luaL_optstring(L, 2, ""), path, sizeof(path));
	if (!realpath(path, real))
		return cs__fail(L, strerror(errno));
	lua_pushstring(L, real);
	return 1;
}

static int m_open(lua_State *L)
{
	struct cs_io *io = luaL_checkudata(L, 1, CS_IO_MT);
	char path[PATH_MAX * 2];
	full_path(io, luaL_checkstring(L, 2), path, sizeof(path));
	const char *mode = luaL_optstring(L, 3, "r");
	lua_getglobal(L, "io");
	if (lua_getfield(L, -1, "open") != LUA_TFUNCTION)
		return luaL_error(L, "openio: the io library is not loaded");
	lua_pushstring(L, path);
	lua_pushstring(L, mode);
	lua_call(L, 2, 3);
	return 3;
}

static int m_stat(lua_State *L)
{
	struct cs_io *io = luaL_checkudata(L, 1, CS_IO_MT);
	char path[PATH_MAX * 2];
	struct stat st;
	if (stat(full_path(io, luaL_checkstring(L, 2), path, sizeof(path)), &st) < 0)
		return cs__fail(L, "notfound");
	lua_createtable(L, 0, 3);
	lua_pushinteger(L, (lua_Integer)st.st_size);
	lua_setfield(L, -2, "size");
	lua_pushinteger(L, (lua_Integer)st.st_mtime);
	lua_setfield(L, -2, "mtime");
	lua_pushstring(L, S_ISDIR(st.st_mode) ? "directory" : S_ISREG(st.st_mode) ? "regular" : "other");
	lua_setfield(L, -2, "type");
	return 1;
}

static int m_tostring(lua_State *L)
{
	struct cs_io *io = luaL_checkudata(L, 1, CS_IO_MT);
	lua_pushfstring(L, "IO: %s", io->root[0] ? io->root : "/");
	return 1;
}

void cs__open_io(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{"realpath", m_realpath}, {"open", m_open}, {"stat", m_stat}, {NULL, NULL},
	};
	luaL_newmetatable(L, CS_IO_MT);
	luaL_newlib(L, methods);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, m_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);
	lua_pushcfunction(L, l_openio);
	lua_setfield(L, -2, "openio");
}
