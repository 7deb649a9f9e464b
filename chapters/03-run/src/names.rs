//! Names for containers nobody named: `adjective_surname`, as docker
//! gives them (`docker run` without `--name` shows up in `ps` as something
//! like `focused_turing`).
//!
//! A name is only a second handle on a container, easier to type than its
//! ID; every command takes either. Our surnames are people whose work this
//! workshop stands on: the Unix authors, the kernel developers behind
//! namespaces, cgroups and overlayfs, and the first container systems
//! (FreeBSD jails, Solaris zones, Docker). Names given with `--name`
//! follow docker's rule ([`valid_name`]).

const ADJECTIVES: [&str; 24] = [
    "bold", "brave", "busy", "calm", "clever", "curious", "eager", "gentle", "happy", "humble",
    "jolly", "keen", "kind", "lucid", "merry", "nimble", "patient", "quiet", "quirky", "sharp",
    "steady", "sunny", "tidy", "witty",
];

const SURNAMES: [&str; 24] = [
    "bach",      // Maurice Bach, "The Design of the UNIX Operating System"
    "biederman", // Eric Biederman: PID and network namespaces
    "cerf",      // Vint Cerf: TCP/IP, for the networks to come
    "corbet",    // Jonathan Corbet: LWN, Linux Device Drivers
    "hamilton",  // Margaret Hamilton: Apollo's flight software
    "hopper",    // Grace Hopper: compilers
    "hykes",     // Solomon Hykes: Docker
    "kamp",      // Poul-Henning Kamp: FreeBSD jails
    "kernighan", // Brian Kernighan: Unix, C, AWK
    "kerrisk",   // Michael Kerrisk: the Linux man pages
    "liskov",    // Barbara Liskov: abstraction, CLU
    "lovelace",  // Ada Lovelace: the first program
    "mcilroy",   // Doug McIlroy: Unix pipes
    "menage",    // Paul Menage: cgroups
    "pike",      // Rob Pike: Plan 9, whose per-process namespaces came first
    "price",     // Daniel Price: Solaris zones
    "ritchie",   // Dennis Ritchie: Unix, C
    "szeredi",   // Miklos Szeredi: overlayfs, FUSE
    "tanenbaum", // Andrew Tanenbaum: MINIX
    "thompson",  // Ken Thompson: Unix
    "torvalds",  // Linus Torvalds: Linux
    "turing",    // Alan Turing
    "wheeler",   // David Wheeler: the subroutine
    "wirth",     // Niklaus Wirth: Pascal, Oberon
];

/// A random `adjective_surname`, from the random `bytes` given (the
/// caller draws them from /dev/urandom).
pub fn generate(bytes: [u8; 2]) -> String {
    let adjective = ADJECTIVES[bytes[0] as usize % ADJECTIVES.len()];
    let surname = SURNAMES[bytes[1] as usize % SURNAMES.len()];
    format!("{adjective}_{surname}")
}

/// docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_adjective_underscore_surname_and_valid() {
        let name = generate([3, 19]);
        assert_eq!(name, "calm_thompson");
        for a in 0..=255u8 {
            let name = generate([a, a.wrapping_mul(7)]);
            assert!(valid_name(&name), "{name}");
        }
    }

    #[test]
    fn names_follow_dockers_rule() {
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a"));
        assert!(!valid_name("a/b"));
    }
}
