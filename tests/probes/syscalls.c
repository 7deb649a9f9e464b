/*
 * syscalls: tries the system calls a seccomp profile allows or denies, and
 * prints one line for each:
 *
 *   NAME ALLOWED                     the call worked
 *   NAME ALLOWED (EINVAL)            it reached the kernel, which refused the
 *                                    deliberately invalid arguments
 *   NAME DENIED (EPERM)              it failed without doing anything
 *   NAME KILLED (SIGSYS)             the process making it was killed
 *
 * Each call runs in a child process of its own, so that a call that changes
 * the process (a new user namespace, another personality) or gets it killed
 * does not spoil the next one. The arguments are chosen so that, without a
 * seccomp filter, every call succeeds for a container's root with docker's
 * default capabilities (or fails with an error only the kernel gives).
 *
 * usage: syscalls [NAME...]            the named checks (default: all)
 *        syscalls host-key DESCRIPTION finds the key DESCRIPTION in our
 *                                      keyrings, prints it, overwrites it
 *
 * Built with gcc -static by tests/ch03_seccomp.rs into a test image.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/kcmp.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif
#define UFFD_USER_MODE_ONLY_FLAG 1
#define KEY_SPEC_PROCESS_KEYRING (-2)
#define KEY_SPEC_SESSION_KEYRING (-3)
#define KEY_SPEC_USER_KEYRING (-4)
#define KEYCTL_GET_KEYRING_ID 0
#define KEYCTL_UPDATE 2
#define KEYCTL_SEARCH 10
#define KEYCTL_READ 11

/* Waits for a child that only calls _exit; returns its status. */
static long wait_exit(pid_t pid) {
    int status;
    if (pid < 0)
        return -1;
    if (pid == 0)
        _exit(0);
    if (waitpid(pid, &status, __WALL) < 0)
        return -1;
    return 0;
}

static long check_getpid(void) { return syscall(SYS_getpid); }
static long check_socket_inet(void) { return socket(AF_INET, SOCK_DGRAM, 0); }
static long check_socket_unix(void) { return socket(AF_UNIX, SOCK_STREAM, 0); }
static long check_socket_vsock(void) { return socket(AF_VSOCK, SOCK_STREAM, 0); }
static long check_socket_alg(void) { return socket(AF_ALG, SOCK_SEQPACKET, 0); }
static long check_personality_linux(void) { return personality(PER_LINUX); }
static long check_personality_query(void) { return personality(0xffffffff); }
static long check_personality_no_aslr(void) { return personality(ADDR_NO_RANDOMIZE); }

static long check_keyctl(void) {
    return syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 1);
}

/* In our own process keyring, which goes away with us. */
static long check_add_key(void) {
    return syscall(SYS_add_key, "user", "crabbox-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING);
}

static long check_request_key(void) {
    syscall(SYS_add_key, "user", "crabbox-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING);
    return syscall(SYS_request_key, "user", "crabbox-probe", NULL, 0);
}

static long check_unshare_user(void) { return unshare(CLONE_NEWUSER); }

/* The attack: a user namespace of our own, then a mount in it. */
static long check_userns_mount(void) {
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
        return -1;
    return mount("none", "/tmp", "tmpfs", 0, NULL);
}

static long check_clone_newuser(void) {
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    return pid < 0 ? pid : wait_exit(pid);
}

static long check_clone3(void) {
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    return pid < 0 ? pid : wait_exit(pid);
}

static long check_fork(void) { return wait_exit(fork()); }

static long check_io_uring_setup(void) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    return syscall(SYS_io_uring_setup, 4, &params);
}

static long check_userfaultfd(void) {
    return syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY_FLAG);
}

/* Our own task clock, user space only: what perf_event_paranoid 2 allows. */
static long check_perf_event_open(void) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof attr;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    return syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
}

/* No such command: the kernel says EINVAL, whoever asks. */
static long check_bpf(void) { return syscall(SYS_bpf, 1000, NULL, 0); }

static long check_kcmp(void) {
    pid_t self = getpid();
    return syscall(SYS_kcmp, self, self, KCMP_FILE, 1, 1);
}

static long check_pidfd_getfd(void) {
    long pidfd = syscall(SYS_pidfd_open, getpid(), 0);
    if (pidfd < 0)
        return pidfd;
    return syscall(SYS_pidfd_getfd, pidfd, 1, 0);
}

/* One container process traces another: attach to our own child. */
static long check_ptrace(void) {
    pid_t child = fork();
    if (child < 0)
        return -1;
    if (child == 0) {
        for (;;)
            pause();
    }
    long rc = ptrace(PTRACE_ATTACH, child, 0, 0);
    int saved = errno;
    if (rc == 0) {
        int status;
        waitpid(child, &status, 0);
        ptrace(PTRACE_DETACH, child, 0, 0);
    }
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    errno = saved;
    return rc;
}

static long check_process_vm_readv(void) {
    char from[8] = "crabbox", to[8];
    struct iovec local = {to, sizeof to}, remote = {from, sizeof from};
    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
}

static long check_mknod(void) {
    unlink("/tmp/probe-null");
    return mknod("/tmp/probe-null", S_IFCHR | 0600, makedev(1, 3));
}

static long check_chown(void) {
    int fd = open("/tmp/probe-owned", O_CREAT | O_WRONLY, 0600);
    if (fd < 0)
        return -1;
    close(fd);
    return chown("/tmp/probe-owned", 65534, 65534);
}

static long check_mkdir(void) {
    rmdir("/tmp/probe-dir");
    return mkdir("/tmp/probe-dir", 0755);
}

#ifdef __x86_64__
/* getpid through the 32-bit ABI (int 0x80): number 20 there, not 39. */
static long check_int80_getpid(void) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20) : "memory");
    if (ret < 0) {
        errno = (int)-ret;
        return -1;
    }
    return ret;
}
#endif

struct check {
    const char *name;
    long (*run)(void);
    int kernel_errno; /* an error that proves the call reached the kernel */
};

static const struct check CHECKS[] = {
    {"getpid", check_getpid, 0},
    {"fork", check_fork, 0},
    {"socket(AF_INET)", check_socket_inet, 0},
    {"socket(AF_UNIX)", check_socket_unix, 0},
    {"personality(PER_LINUX)", check_personality_linux, 0},
    {"personality(query)", check_personality_query, 0},
    {"ptrace", check_ptrace, 0},
    {"process_vm_readv", check_process_vm_readv, 0},
    {"mknod", check_mknod, 0},
    {"chown", check_chown, 0},
    {"mkdir", check_mkdir, 0},
    {"keyctl", check_keyctl, 0},
    {"add_key", check_add_key, 0},
    {"request_key", check_request_key, 0},
    {"unshare(CLONE_NEWUSER)", check_unshare_user, 0},
    {"userns-mount", check_userns_mount, 0},
    {"clone(CLONE_NEWUSER)", check_clone_newuser, 0},
    {"clone3", check_clone3, 0},
    {"io_uring_setup", check_io_uring_setup, 0},
    {"userfaultfd", check_userfaultfd, 0},
    {"perf_event_open", check_perf_event_open, 0},
    {"bpf", check_bpf, EINVAL},
    {"socket(AF_VSOCK)", check_socket_vsock, EAFNOSUPPORT},
    {"socket(AF_ALG)", check_socket_alg, EAFNOSUPPORT},
    {"personality(ADDR_NO_RANDOMIZE)", check_personality_no_aslr, 0},
    {"kcmp", check_kcmp, 0},
    {"pidfd_getfd", check_pidfd_getfd, 0},
#ifdef __x86_64__
    {"int80-getpid", check_int80_getpid, 0},
#endif
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        write(1, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void run_check(const struct check *c) {
    pid_t pid = fork();
    if (pid == 0) {
        errno = 0;
        long rc = c->run();
        int e = errno;
        if (rc >= 0)
            say("%s ALLOWED\n", c->name);
        else if (c->kernel_errno && e == c->kernel_errno)
            say("%s ALLOWED (%s)\n", c->name, strerrorname_np(e));
        else
            say("%s DENIED (%s)\n", c->name, e ? strerrorname_np(e) : "?");
        _exit(0);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
        say("%s FAILED (fork: %s)\n", c->name, strerrorname_np(errno));
        return;
    }
    if (WIFSIGNALED(status)) {
        const char *signal = sigabbrev_np(WTERMSIG(status));
        say("%s KILLED (SIG%s)\n", c->name, signal ? signal : "?");
    }
}

/* The keyring attack: a key of the host's root, read and overwritten. */
static int host_key(const char *description) {
    long id = syscall(SYS_request_key, "user", description, NULL, 0);
    char value[256];
    long n = id < 0 ? -1 : syscall(SYS_keyctl, KEYCTL_READ, id, value, sizeof value - 1);
    if (n < 0) {
        say("host-key-read DENIED (%s)\n", strerrorname_np(errno));
    } else {
        value[n < (long)sizeof value ? n : (long)sizeof value - 1] = 0;
        say("host-key-read ALLOWED %s\n", value);
    }
    /* Found again, by another call, so that writing is tried on its own. */
    id = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, "user", description, 0);
    if (id < 0 || syscall(SYS_keyctl, KEYCTL_UPDATE, id, "PWNED", 5) < 0)
        say("host-key-write DENIED (%s)\n", strerrorname_np(errno));
    else
        say("host-key-write ALLOWED\n");
    return 0;
}

int main(int argc, char **argv) {
    size_t count = sizeof CHECKS / sizeof CHECKS[0];
    if (argc == 3 && strcmp(argv[1], "host-key") == 0)
        return host_key(argv[2]);
    if (argc == 1) {
        for (size_t i = 0; i < count; i++)
            run_check(&CHECKS[i]);
        return 0;
    }
    for (int a = 1; a < argc; a++) {
        size_t i;
        for (i = 0; i < count && strcmp(CHECKS[i].name, argv[a]) != 0; i++)
            ;
        if (i == count) {
            say("%s UNKNOWN\n", argv[a]);
            return 2;
        }
        run_check(&CHECKS[i]);
    }
    return 0;
}
