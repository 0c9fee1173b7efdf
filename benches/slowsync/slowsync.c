/*
 * slowsync: an LD_PRELOAD shim that makes every sync as slow as a gateway's flash and counts
 * what a process syncs and writes. Used by `cargo bench --bench intake` (the "journal on
 * flash" section) and by the e2e tests (tests/e2e/slowsync.rs); see docs/PERFORMANCE.md.
 *
 * Built by benches/slowsync/mod.rs with the system C compiler:
 *     cc -shared -fPIC -O2 -o libslowsync.so slowsync.c -ldl -lpthread
 * C rather than a Rust cdylib: it is one file, needs no crate of its own, no workspace and no
 * second cargo invocation, and builds wherever the tests' gcc does.
 *
 * Environment (read once, at the first call):
 *   OUTPOST_SLOWSYNC_US     latency added to each sync, in microseconds (default 2000; 0 only
 *                           counts)
 *   OUTPOST_SLOWSYNC_COUNT  a file of SLOWSYNC_SLOTS 64-bit counters (created and sized by the
 *                           shim if needed), mmap'd shared and incremented atomically, so the
 *                           counts survive a SIGTERM or SIGKILL of the process; without it
 *                           nothing is counted
 *   OUTPOST_SLOWSYNC_SERIAL 1 (default): the added latency and the real sync are served one
 *                           sync at a time in the process, like a card that completes one
 *                           flush at a time; 0: syncs from several threads sleep side by side.
 *                           With no added latency, real syncs are never serialised.
 *
 * Intercepted: fsync, fdatasync, syncfs, sync_file_range (slowed only with
 * SYNC_FILE_RANGE_WAIT_AFTER), msync (slowed only with MS_SYNC). Each is slowed, counted, then
 * passed to the real function (dlsym(RTLD_NEXT, ...)). write, pwrite, pwrite64, writev and close
 * are intercepted only to count bytes per kind of file and to recognise a WAL header sync; they
 * add no latency. SQLite (bundled in outpost) and Rust's std call these through glibc, so the
 * shim sees them in a dynamically linked binary; it cannot see a statically linked one, nor
 * work across an emulator (qemu-user) boundary.
 *
 * What a file is, is read from /proc/self/fd/N once per descriptor (until it is closed):
 * a name ending in "-wal" is SQLite's WAL, "-shm" its shared index, "-journal" a rollback
 * journal, ".db" a database, any other path "other", and sockets, pipes and the like are not
 * files (their writes are not counted).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* The counter slots; benches/slowsync/mod.rs (`Slot`) reads them by the same numbers. */
enum {
    S_MAGIC = 0,          /* SLOWSYNC_MAGIC once the file is set up */
    S_SYNCS = 1,          /* every sync call (fsync, fdatasync, syncfs, sync_file_range, msync) */
    S_FSYNC = 2,
    S_FDATASYNC = 3,
    S_OTHER_SYNC_CALLS = 4, /* syncfs, sync_file_range, msync */
    S_WAL_COMMIT = 5,     /* WAL syncs on the journal's writer thread, frames written before */
    S_WAL_HEADER = 6,     /* WAL syncs right after a fresh WAL header (a restart of the WAL) */
    S_CKPT_THREAD = 7,    /* syncs on the journal's checkpoint thread (any file) */
    S_WRITER_DB = 8,      /* syncs of the database file on the writer thread (its checkpoints) */
    S_OTHER_SYNCS = 9,    /* all other syncs (other threads, other files, the reference's log) */
    S_SYNC_NS = 10,       /* wall time in sync calls, added latency included */
    S_BYTES_WAL = 11,     /* bytes written to a WAL */
    S_BYTES_DB = 12,      /* bytes written to a database file */
    S_BYTES_SHM = 13,     /* bytes written to a -shm (SQLite mostly uses it through mmap) */
    S_BYTES_OTHER = 14,   /* bytes written to other files (rollback journals, logs, ...) */
    S_WAL_SYNC_ANY = 15,  /* every WAL sync, whatever the thread */
    SLOWSYNC_SLOTS = 32,
};
#define SLOWSYNC_MAGIC 0x534c4f5753594e43ULL /* "SLOWSYNC" */

enum { K_UNKNOWN = 0, K_NOTFILE, K_WAL, K_SHM, K_DB, K_OTHER };
enum { T_OTHER = 0, T_WRITER, T_CKPT };

#define MAX_FD 4096
/* Per descriptor: its kind (0 until classified) and whether the last write to it was a WAL
 * header (32 bytes at offset 0). Best effort under races: a wrong guess miscounts one sync. */
static unsigned char fd_kind[MAX_FD];
static unsigned char fd_header[MAX_FD];

static uint64_t *counters;
static long latency_us = -1;
static int serial = 1;
static pthread_mutex_t device = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_syncfs)(int);
static int (*real_sync_file_range)(int, off64_t, off64_t, unsigned int);
static int (*real_msync)(void *, size_t, int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static int (*real_close)(int);

static void setup(void) {
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_syncfs = dlsym(RTLD_NEXT, "syncfs");
    real_sync_file_range = dlsym(RTLD_NEXT, "sync_file_range");
    real_msync = dlsym(RTLD_NEXT, "msync");
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_close = dlsym(RTLD_NEXT, "close");

    const char *us = getenv("OUTPOST_SLOWSYNC_US");
    latency_us = us && *us ? strtol(us, NULL, 10) : 2000;
    if (latency_us < 0) latency_us = 0;
    const char *ser = getenv("OUTPOST_SLOWSYNC_SERIAL");
    /* Without added latency the real syncs are left to overlap as they would. */
    serial = latency_us > 0 && !(ser && strcmp(ser, "0") == 0);

    const char *path = getenv("OUTPOST_SLOWSYNC_COUNT");
    if (!path || !*path) return;
    /* The shim's own descriptor: opened with the raw syscall wrappers, never classified. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return;
    size_t size = SLOWSYNC_SLOTS * sizeof(uint64_t);
    struct stat st;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size < size && ftruncate(fd, size) != 0) {
        real_close(fd);
        return;
    }
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    real_close(fd);
    if (map == MAP_FAILED) return;
    counters = map;
    __atomic_store_n(&counters[S_MAGIC], SLOWSYNC_MAGIC, __ATOMIC_RELAXED);
}

static inline void init(void) { pthread_once(&once, setup); }

static inline void count(int slot, uint64_t n) {
    if (counters) __atomic_fetch_add(&counters[slot], n, __ATOMIC_RELAXED);
}

static int classify(int fd) {
    if (fd < 0 || fd >= MAX_FD) return K_NOTFILE;
    int k = __atomic_load_n(&fd_kind[fd], __ATOMIC_RELAXED);
    if (k != K_UNKNOWN) return k;
    char link[64], name[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, name, sizeof name - 1);
    if (n <= 0 || name[0] != '/') {
        k = K_NOTFILE; /* socket:[..], pipe:[..], anon_inode:.. */
    } else {
        name[n] = 0;
        size_t len = (size_t)n;
#define ENDS(s) (len >= sizeof(s) - 1 && memcmp(name + len - (sizeof(s) - 1), s, sizeof(s) - 1) == 0)
        if (ENDS("-wal")) k = K_WAL;
        else if (ENDS("-shm")) k = K_SHM;
        else if (ENDS(".db")) k = K_DB;
        else k = K_OTHER;
#undef ENDS
        struct stat st;
        if (k == K_OTHER && stat(name, &st) == 0 && !S_ISREG(st.st_mode)) k = K_NOTFILE; /* /dev/null, a tty */
    }
    __atomic_store_n(&fd_kind[fd], (unsigned char)k, __ATOMIC_RELAXED);
    return k;
}

static int thread_kind(void) {
    static __thread int kind = -1;
    if (kind < 0) {
        char name[17] = {0};
        prctl(PR_GET_NAME, name, 0, 0, 0);
        /* Names set by src/journal/mod.rs (std::thread::Builder::name). */
        /* The writer commits; its sync thread syncs what it committed. Both are "the writer". */
        if (strcmp(name, "journal-writer") == 0 || strcmp(name, "journal-sync") == 0) kind = T_WRITER;
        else if (strcmp(name, "journal-ckpt") == 0) kind = T_CKPT;
        else kind = T_OTHER;
    }
    return kind;
}

static void counted_write(int fd, ssize_t written, int header) {
    if (written <= 0 || !counters) return;
    int k = classify(fd);
    if (k == K_NOTFILE) return;
    if (fd < MAX_FD) __atomic_store_n(&fd_header[fd], (unsigned char)(k == K_WAL && header), __ATOMIC_RELAXED);
    count(k == K_WAL ? S_BYTES_WAL : k == K_DB ? S_BYTES_DB : k == K_SHM ? S_BYTES_SHM : S_BYTES_OTHER,
          (uint64_t)written);
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* The added latency, then the real call (under the "device" lock when serial). */
#define SLOW(call, slow)                                                                 \
    do {                                                                                 \
        uint64_t t0 = now_ns();                                                          \
        if (serial && (slow)) pthread_mutex_lock(&device);                               \
        if ((slow) && latency_us > 0) {                                                  \
            struct timespec d = {latency_us / 1000000, (latency_us % 1000000) * 1000};   \
            while (nanosleep(&d, &d) != 0 && errno == EINTR) {                           \
            }                                                                            \
        }                                                                                \
        int saved;                                                                       \
        r = call;                                                                        \
        saved = errno;                                                                   \
        if (serial && (slow)) pthread_mutex_unlock(&device);                             \
        count(S_SYNC_NS, now_ns() - t0);                                                 \
        errno = saved;                                                                   \
    } while (0)

static void counted_sync(int fd, int slot) {
    count(S_SYNCS, 1);
    count(slot, 1);
    if (!counters) return;
    int k = fd >= 0 ? classify(fd) : K_NOTFILE;
    int t = thread_kind();
    int header = fd >= 0 && fd < MAX_FD && __atomic_load_n(&fd_header[fd], __ATOMIC_RELAXED);
    if (k == K_WAL) count(S_WAL_SYNC_ANY, 1);
    if (k == K_WAL && header) count(S_WAL_HEADER, 1);
    else if (t == T_CKPT) count(S_CKPT_THREAD, 1);
    else if (t == T_WRITER && k == K_WAL) count(S_WAL_COMMIT, 1);
    else if (t == T_WRITER && k == K_DB) count(S_WRITER_DB, 1);
    else count(S_OTHER_SYNCS, 1);
}

int fsync(int fd) {
    init();
    int r;
    counted_sync(fd, S_FSYNC);
    SLOW(real_fsync(fd), 1);
    return r;
}

int fdatasync(int fd) {
    init();
    int r;
    counted_sync(fd, S_FDATASYNC);
    SLOW(real_fdatasync(fd), 1);
    return r;
}

int syncfs(int fd) {
    init();
    int r;
    counted_sync(-1, S_OTHER_SYNC_CALLS);
    SLOW(real_syncfs(fd), 1);
    return r;
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    init();
    int r;
    counted_sync(fd, S_OTHER_SYNC_CALLS);
    SLOW(real_sync_file_range(fd, offset, nbytes, flags), (flags & SYNC_FILE_RANGE_WAIT_AFTER) != 0);
    return r;
}

int msync(void *addr, size_t length, int flags) {
    init();
    int r;
    if (flags & MS_SYNC) counted_sync(-1, S_OTHER_SYNC_CALLS);
    SLOW(real_msync(addr, length, flags), (flags & MS_SYNC) != 0);
    return r;
}

ssize_t write(int fd, const void *buf, size_t n) {
    init();
    ssize_t w = real_write(fd, buf, n);
    counted_write(fd, w, 0);
    return w;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    init();
    ssize_t w = real_pwrite(fd, buf, n, off);
    counted_write(fd, w, off == 0 && n == 32);
    return w;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
    init();
    ssize_t w = real_pwrite64(fd, buf, n, off);
    counted_write(fd, w, off == 0 && n == 32);
    return w;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    init();
    ssize_t w = real_writev(fd, iov, cnt);
    counted_write(fd, w, 0);
    return w;
}

int close(int fd) {
    init();
    if (fd >= 0 && fd < MAX_FD) {
        __atomic_store_n(&fd_kind[fd], K_UNKNOWN, __ATOMIC_RELAXED);
        __atomic_store_n(&fd_header[fd], 0, __ATOMIC_RELAXED);
    }
    return real_close(fd);
}
