//! Which variables an instruction sees: ARG, ENV and `--build-arg`.
//!
//! ```dockerfile
//! ARG VERSION=1.0          # global: FROM lines may use it…
//! FROM busybox:$VERSION
//! RUN echo $VERSION        # …but not this: empty here
//! ARG VERSION              # now the stage sees it (1.0, or --build-arg's)
//! ENV VERSION=2.0          # ENV wins over an ARG of the same name
//! ```
//!
//! The rules, as docker has them:
//!
//! * an ARG before the first FROM is in scope for FROM lines only; a stage
//!   sees it after declaring it again, without a value, inside the stage;
//! * `--build-arg NAME=VALUE` overrides the value of `ARG NAME` (it never
//!   declares one: an unused one gets a warning);
//! * ENV (also the base image's) wins over an ARG of the same name;
//! * ARG values are in RUN's environment but not saved in the image;
//! * the proxy variables (`HTTP_PROXY` and friends) need no ARG: given with
//!   `--build-arg`, RUN sees them, and neither the history nor the cache
//!   key does, since they say where the build runs, not what it makes.

use crate::expand::{ExpandError, Lexer};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Variables every build knows without an ARG, if given with --build-arg.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The variables of one build: `--build-arg`s and global ARGs, and, for the
/// stage being built, the ARGs it declared.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// `--build-arg K=V` (a bare `K` took its value from our environment).
    build_args: BTreeMap<String, String>,
    /// ARGs before the first FROM, with their values, plus the platform
    /// ARGs buildkit predefines (`TARGETARCH`…).
    global: BTreeMap<String, Option<String>>,
    /// The current stage's ARGs, in the order declared.
    stage: Vec<(String, Option<String>)>,
    /// Which `--build-arg`s some ARG used, for the warning about the rest.
    used: BTreeSet<String>,
}

impl Scope {
    /// A scope with these `--build-arg` values (`K=V`, or `K` to take
    /// `$K` from the environment, skipped when unset, as docker does).
    pub fn new(build_args: &[String]) -> Result<Scope, String> {
        let mut parsed = BTreeMap::new();
        for arg in build_args {
            let (key, value) = match arg.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (arg.clone(), std::env::var(arg).ok()),
            };
            if key.is_empty() {
                return Err(format!("invalid --build-arg {arg:?}: write KEY=VALUE"));
            }
            if let Some(value) = value {
                parsed.insert(key, value);
            }
        }
        let mut global = BTreeMap::new();
        for (name, value) in platform_args() {
            global.insert(name.to_string(), Some(value));
        }
        Ok(Scope {
            build_args: parsed,
            global,
            ..Scope::default()
        })
    }

    /// `ARG NAME[=DEFAULT]` before the first FROM; the default is expanded
    /// with the global ARGs declared so far.
    pub fn declare_global(&mut self, word: &str, lexer: &Lexer) -> Result<(), ExpandError> {
        let env = self.global_env();
        let (name, value) = self.declared(word, false, lexer, &env)?;
        self.global.insert(name, value);
        Ok(())
    }

    // ANCHOR: declare
    /// `ARG NAME[=DEFAULT]` inside a stage: a `--build-arg` wins, then the
    /// default written here; with neither, a global ARG of that name
    /// gives its value. `env` is what the default may refer to.
    pub fn declare(
        &mut self,
        word: &str,
        lexer: &Lexer,
        env: &HashMap<String, String>,
    ) -> Result<(), ExpandError> {
        let (name, value) = self.declared(word, true, lexer, env)?;
        self.stage.retain(|(n, _)| *n != name);
        self.stage.push((name, value));
        Ok(())
    }
    // ANCHOR_END: declare

    fn declared(
        &self,
        word: &str,
        inherit_global: bool,
        lexer: &Lexer,
        env: &HashMap<String, String>,
    ) -> Result<(String, Option<String>), ExpandError> {
        let (name, default) = match word.split_once('=') {
            Some((name, default)) => (name.to_string(), Some(lexer.expand_word(default, env)?)),
            None => (word.to_string(), None),
        };
        let value = match self.build_args.get(&name) {
            Some(value) => Some(value.clone()),
            None => default.or_else(|| {
                inherit_global
                    .then(|| self.global.get(&name).cloned().flatten())
                    .flatten()
            }),
        };
        Ok((name, value))
    }

    /// Notes that `--build-arg`s were consumed by an ARG of that name.
    pub fn mark_used(&mut self, word: &str) {
        let name = word.split_once('=').map_or(word, |(n, _)| n);
        if self.build_args.contains_key(name) {
            self.used.insert(name.to_string());
        }
    }

    /// A new stage starts: its ARGs are forgotten, the global ones stay.
    pub fn start_stage(&mut self) {
        self.stage.clear();
    }

    /// What FROM lines see: the global ARGs (and `--build-arg`s of them).
    pub fn global_env(&self) -> HashMap<String, String> {
        self.global
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect()
    }

    // ANCHOR: stage_env
    /// What an instruction of the stage sees when its words are expanded:
    /// the ARGs declared in the stage, then the ENV (`env`, `K=V` lines,
    /// the base image's included) on top: ENV wins.
    pub fn stage_env(&self, env: &[String]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = self
            .stage
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        for line in env {
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            vars.insert(k.to_string(), v.to_string());
        }
        vars
    }
    // ANCHOR_END: stage_env

    /// The extra environment of a RUN: ARGs in scope that no ENV sets,
    /// and proxy variables given with `--build-arg`.
    pub fn run_env(&self, env: &[String]) -> Vec<String> {
        let set_by_env = |k: &str| {
            env.iter()
                .any(|l| l.split_once('=').map_or(l.as_str(), |p| p.0) == k)
        };
        let mut extra: Vec<String> = self
            .stage
            .iter()
            .filter(|(k, _)| !set_by_env(k))
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect();
        for name in PROXY_ARGS {
            let declared = self.stage.iter().any(|(k, _)| k == name);
            if let (false, Some(value)) = (declared, self.build_args.get(name)) {
                if !set_by_env(name) {
                    extra.push(format!("{name}={value}"));
                }
            }
        }
        extra
    }

    /// The ARGs in scope with a value, `K=V`, as they enter a RUN's cache
    /// key and history line (proxy variables left out unless declared).
    pub fn args_in_scope(&self) -> Vec<String> {
        self.stage
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect()
    }

    /// `--build-arg`s no ARG asked for (docker warns about them), proxy
    /// variables excepted.
    pub fn unused_build_args(&self) -> Vec<String> {
        self.build_args
            .keys()
            .filter(|k| !self.used.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .filter(|k| !self.global.contains_key(*k))
            .cloned()
            .collect()
    }
}

/// The platform ARGs buildkit predefines in the global scope (a stage
/// sees them after `ARG TARGETARCH`, as any global ARG).
fn platform_args() -> Vec<(&'static str, String)> {
    let arch = ch01_images::platform::Platform::host().architecture;
    let platform = format!("linux/{arch}");
    vec![
        ("TARGETPLATFORM", platform.clone()),
        ("TARGETOS", "linux".into()),
        ("TARGETARCH", arch.clone()),
        ("BUILDPLATFORM", platform),
        ("BUILDOS", "linux".into()),
        ("BUILDARCH", arch),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[&str]) -> Vec<String> {
        pairs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_global_arg_needs_a_declaration_in_the_stage() {
        let lexer = Lexer::default();
        let mut scope = Scope::new(&[]).unwrap();
        scope.declare_global("VERSION=1.0", &lexer).unwrap();
        assert_eq!(scope.global_env()["VERSION"], "1.0");
        scope.start_stage();
        assert!(!scope.stage_env(&[]).contains_key("VERSION"));
        scope.declare("VERSION", &lexer, &HashMap::new()).unwrap();
        assert_eq!(scope.stage_env(&[])["VERSION"], "1.0");
    }

    #[test]
    fn build_args_override_and_env_wins() {
        let lexer = Lexer::default();
        let mut scope = Scope::new(&[
            "A=from-cli".into(),
            "UNUSED=1".into(),
            "HTTP_PROXY=http://p".into(),
        ])
        .unwrap();
        scope.start_stage();
        scope.declare("A=default", &lexer, &HashMap::new()).unwrap();
        scope.mark_used("A=default");
        assert_eq!(scope.stage_env(&[])["A"], "from-cli");
        assert_eq!(scope.stage_env(&env_of(&["A=env"]))["A"], "env");
        assert_eq!(
            scope.run_env(&env_of(&["A=env"])),
            vec!["HTTP_PROXY=http://p"]
        );
        assert_eq!(scope.args_in_scope(), vec!["A=from-cli"]);
        assert_eq!(scope.unused_build_args(), vec!["UNUSED"]);
    }

    #[test]
    fn a_default_may_use_earlier_variables() {
        let lexer = Lexer::default();
        let mut scope = Scope::new(&[]).unwrap();
        scope.declare_global("A=1", &lexer).unwrap();
        scope.declare_global("B=${A}2", &lexer).unwrap();
        assert_eq!(scope.global_env()["B"], "12");
    }
}
