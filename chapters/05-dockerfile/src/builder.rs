//! The builder: a Dockerfile becomes an image, instruction by instruction.
//!
//! ```text
//! FROM busybox            layers [a b]      config from busybox     key = busybox's ID
//! ENV APP=/app            layers [a b]      Env += APP=/app          key = k(… ENV APP=/app)
//! COPY . /app             layers [a b c]    (files → layer c)        key = k(… + checksum of .)
//! RUN make                layers [a b c d]  (a container → layer d)  key = k(… RUN make)
//! CMD ["/app/run"]        layers [a b c d]  Cmd = ["/app/run"]       key = k(… CMD …)
//! ```
//!
//! Most instructions only change the image's config (its `Env`, `Cmd`,
//! `WorkingDir`…): they cost nothing and make no layer, only a history
//! line marked `empty_layer`. Three touch files: RUN runs a container over
//! the layers so far, COPY and ADD write files into them; what changed
//! becomes one new layer on top (see [`crate::step`]). Before doing any of
//! that, the builder looks the step up in the cache by its key (see
//! [`crate::cache`]).
//!
//! At the end, the target stage's layers, config and history are
//! committed to chapter 1's store as an OCI image and named by each `-t`.

use crate::cache::{self, Cache, CachedStep, Layer};
use crate::cli::BuildArgs;
use crate::context::Context;
use crate::copy::{self, CopyOptions};
use crate::expand::Lexer;
use crate::ignore::Ignore;
use crate::instruction::{Args, Instruction, Keyword, Pair};
use crate::scope::Scope;
use crate::stage::{self, Plan, Stage};
use crate::step::{self, RunStep, StepRoot, Stubs, Workspace};
use ch01_images::cli::GlobalArgs;
use ch01_images::digest::Digest;
use ch01_images::error::{Error, Result};
use ch01_images::manifest::{History, ImageConfig, RootFs, RunConfig};
use ch01_images::reference::Reference;
use ch01_images::store::Store;
use ch02_layers::layer_store::LayerStore;
use ch03_run::spec::Mount;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The default SHELL of shell-form commands.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The image a stage is making, as it grows.
#[derive(Debug, Clone)]
pub struct StageImage {
    /// Bottom first.
    pub layers: Vec<Layer>,
    /// Config and history (`rootfs` is filled in at commit).
    pub config: ImageConfig,
    /// The cache key of the last step (see [`crate::cache`]).
    pub key: Digest,
    /// Whether this stage set CMD (an ENTRYPOINT then keeps it).
    pub cmd_set: bool,
}

impl StageImage {
    fn run_config(&self) -> &RunConfig {
        &self.config.config
    }

    fn env(&self) -> Vec<String> {
        self.config.config.env.clone().unwrap_or_default()
    }

    fn shell(&self) -> Vec<String> {
        match self.config.config.other.get("Shell") {
            Some(Value::Array(words)) => words
                .iter()
                .filter_map(|w| w.as_str().map(str::to_string))
                .collect(),
            _ => DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn workdir(&self) -> String {
        self.config
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }
}

/// Everything one build needs, passed down to each instruction.
struct Build<'a> {
    globals: &'a GlobalArgs,
    store: Store,
    layers: LayerStore,
    cache: Cache,
    use_cache: bool,
    plan: Plan,
    lexer: Lexer,
    scope: Scope,
    context: Context,
    workspace: Workspace,
    /// The images of the stages built so far, by index.
    done: BTreeMap<usize, StageImage>,
    out: Output,
    step: usize,
    total: usize,
}

/// What the build prints: to stdout, or nowhere with `-q`.
struct Output {
    quiet: bool,
}

impl Output {
    fn line(&self, text: &str) {
        if !self.quiet {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }
}

// ANCHOR: build_command
/// `build`: reads the Dockerfile, builds the stages the target needs,
/// commits the target's image and names it. Returns the exit code (a
/// failed RUN's own code, as docker does).
pub fn build_command(globals: &GlobalArgs, args: &BuildArgs) -> Result<i32> {
    let context_dir = &args.context;
    if !context_dir.is_dir() {
        return Err(Error::new(format!(
            "unable to prepare context: path {:?} not found (give the directory COPY reads from, often .)",
            context_dir.display().to_string()
        )));
    }
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| context_dir.join("Dockerfile"));
    let text = std::fs::read_to_string(&file).map_err(|e| {
        Error::new(format!(
            "cannot read the Dockerfile {}: {e} (name it with -f FILE)",
            file.display()
        ))
    })?;
    let name = file.display().to_string();
    let dockerfile = crate::parse(&name, &text).map_err(parse_error)?;
    let plan = stage::plan(&name, &dockerfile).map_err(parse_error)?;
    let lexer = Lexer::new(dockerfile.directives.escape);
    let mut scope = Scope::new(&args.build_args).map_err(Error::new)?;
    for arg in &plan.global_args {
        for word in words(arg) {
            scope.mark_used(&word);
            scope
                .declare_global(&word, &lexer)
                .map_err(|e| at(&plan, arg, e.to_string()))?;
        }
    }
    let target = plan.target(args.target.as_deref()).map_err(Error::new)?;
    let global_env = scope.global_env();
    let base_of = |stage: &Stage| {
        lexer
            .expand_word(&stage.base, &global_env)
            .map_err(|e| crate::ParseError {
                file: name.clone(),
                line: stage.from.line,
                message: e.to_string(),
            })
    };
    let needed = plan.needed(target, &base_of).map_err(parse_error)?;
    let (ignore, _) = Ignore::load(&file, context_dir)?;
    let context = Context::build_context(context_dir, ignore)?;
    let store = globals.store()?;
    // Until the image is named, no name reaches the blobs this build
    // stores: keep garbage collection away (it waits for the build).
    let _pinned = store.pin_for_pull()?;
    step::private_mounts()?;
    let workspace = Workspace::create(&globals.root)?;
    let total = plan
        .stages
        .iter()
        .filter(|s| needed.contains(&s.index))
        .map(|s| 1 + s.instructions.len())
        .sum();
    let mut build = Build {
        globals,
        layers: LayerStore::open(&globals.root)?,
        cache: Cache::open(&globals.root),
        store,
        use_cache: !args.no_cache,
        plan,
        lexer,
        scope,
        context,
        workspace,
        done: BTreeMap::new(),
        out: Output { quiet: args.quiet },
        step: 0,
        total,
    };
    let started = Instant::now();
    for index in 0..build.plan.stages.len() {
        let stage = build.plan.stages[index].clone();
        if !needed.contains(&index) {
            build.out.line(&format!(
                "Skipping stage {}: the target does not need it",
                stage.label()
            ));
            continue;
        }
        let image = build.stage(&stage)?;
        build.done.insert(index, image);
    }
    let image = build
        .done
        .remove(&target)
        .expect("the target stage was built");
    let id = commit(&build, image, &args.labels, &args.tags)?;
    build.cache.pin(&build.store, &build.layers)?;
    let unused = build.scope.unused_build_args();
    if !unused.is_empty() {
        eprintln!(
            "[Warning] One or more build-args [{}] were not consumed",
            unused.join(" ")
        );
    }
    if args.quiet {
        println!("{id}");
    } else {
        build.out.line(&format!(
            "Successfully built {} in {}",
            id.short(),
            seconds(started)
        ));
        for tag in &args.tags {
            let familiar = Reference::parse(tag)
                .map(|r| r.familiar())
                .unwrap_or(tag.clone());
            build.out.line(&format!("Successfully tagged {familiar}"));
        }
    }
    Ok(0)
}
// ANCHOR_END: build_command

fn parse_error(e: crate::ParseError) -> Error {
    Error::new(e.to_string())
}

/// An error at an instruction: `FILE:LINE: message`.
fn at(plan: &Plan, instruction: &Instruction, message: String) -> Error {
    Error::new(format!("{}:{}: {message}", plan.file, instruction.line))
}

fn seconds(since: Instant) -> String {
    format!("{:.2}s", since.elapsed().as_secs_f64())
}

/// The words of an instruction (ARG, EXPOSE…), as written.
fn words(instruction: &Instruction) -> Vec<String> {
    match &instruction.args {
        Args::Words(words) | Args::Exec(words) => words.clone(),
        Args::Text(text) | Args::Shell(text) => vec![text.clone()],
        _ => Vec::new(),
    }
}

/// Now, as RFC 3339 (the `created` of configs and history lines).
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// What one instruction did, for the output and the history.
enum Done {
    /// Only the config changed.
    Config,
    /// A filesystem step: its layer (None: no file changed), whether it
    /// came from the cache, and when it was first made.
    Files {
        layer: Option<Box<Layer>>,
        cached: bool,
        created: String,
    },
}

impl Build<'_> {
    fn next_step(&mut self, instruction: &Instruction) {
        self.step += 1;
        let text = instruction.original.trim();
        self.out
            .line(&format!("Step {}/{} : {text}", self.step, self.total));
    }

    fn error(&self, instruction: &Instruction, message: impl Into<String>) -> Error {
        at(&self.plan, instruction, message.into())
    }

    /// What the instruction's words see: ARGs and ENV.
    fn vars(&self, image: &StageImage) -> HashMap<String, String> {
        self.scope.stage_env(&image.env())
    }

    fn expand(&self, image: &StageImage, instruction: &Instruction, text: &str) -> Result<String> {
        self.lexer
            .expand_word(text, &self.vars(image))
            .map_err(|e| self.error(instruction, e.to_string()))
    }

    // ANCHOR: stage
    /// Builds one stage: its base, then each instruction in order.
    fn stage(&mut self, stage: &Stage) -> Result<StageImage> {
        self.scope.start_stage();
        self.next_step(&stage.from);
        let started = Instant::now();
        let global_env = self.scope.global_env();
        let base = self
            .lexer
            .expand_word(&stage.base, &global_env)
            .map_err(|e| self.error(&stage.from, e.to_string()))?;
        if let Some(platform) = stage.from.flag("platform") {
            let wanted = self
                .lexer
                .expand_word(platform, &global_env)
                .map_err(|e| self.error(&stage.from, e.to_string()))?;
            let host = ch01_images::platform::Platform::host();
            let here = format!("{}/{}", host.os, host.architecture);
            if wanted != here {
                return Err(self.error(
                    &stage.from,
                    format!("FROM --platform={wanted}: building for another platform is not supported here (this machine is {here})"),
                ));
            }
        }
        let mut image = self.base_image(stage, &base)?;
        self.out.line(&format!(
            " ---> {} ({})",
            image.key.short(),
            seconds(started)
        ));
        // ONBUILD triggers of the base image run first, once.
        let triggers = take_triggers(&mut image.config.config);
        for trigger in triggers {
            let parsed = crate::parse(&format!("{} (ONBUILD of {base})", self.plan.file), &trigger)
                .map_err(parse_error)?;
            for mut instruction in parsed.instructions {
                instruction.line = stage.from.line;
                self.out
                    .line(&format!(" ---> Running ONBUILD trigger: {trigger}"));
                self.instruction(stage, &mut image, &instruction)?;
            }
        }
        for instruction in &stage.instructions {
            self.next_step(instruction);
            self.instruction(stage, &mut image, instruction)?;
        }
        Ok(image)
    }
    // ANCHOR_END: stage

    /// The image a stage starts from: `scratch`, an earlier stage, or an
    /// image from the store (pulled if missing).
    fn base_image(&mut self, stage: &Stage, base: &str) -> Result<StageImage> {
        if base.eq_ignore_ascii_case("scratch") {
            let platform = ch01_images::platform::Platform::host();
            return Ok(StageImage {
                layers: Vec::new(),
                config: ImageConfig {
                    architecture: platform.architecture,
                    os: platform.os,
                    variant: platform.variant,
                    rootfs: RootFs {
                        kind: "layers".into(),
                        diff_ids: Vec::new(),
                    },
                    ..ImageConfig::default()
                },
                key: Digest::of(b"scratch"),
                cmd_set: false,
            });
        }
        if let Some(index) = self
            .plan
            .stage_named(base, stage.index, stage.from.line)
            .map_err(parse_error)?
        {
            return Ok(StageImage {
                cmd_set: false,
                ..self.done[&index].clone()
            });
        }
        let image = ch01_images::cli::image_or_pull(self.globals, &self.store, base)?;
        let config_bytes = self.store.read_blob(image.id())?;
        let config = ImageConfig::parse(&config_bytes)?;
        let layers = image
            .manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(descriptor, diff_id)| Layer {
                descriptor: descriptor.clone(),
                diff_id: diff_id.clone(),
            })
            .collect();
        Ok(StageImage {
            layers,
            config,
            key: image.id().clone(),
            cmd_set: false,
        })
    }

    // ANCHOR: instruction
    /// One instruction: the config changes it makes, or the filesystem
    /// step it runs (unless the cache has it), then its history line.
    fn instruction(
        &mut self,
        stage: &Stage,
        image: &mut StageImage,
        instruction: &Instruction,
    ) -> Result<()> {
        let started = Instant::now();
        check_flags(instruction).map_err(|e| self.error(instruction, e))?;
        let (created_by, done) = match instruction.keyword {
            Keyword::Run => self.run(stage, image, instruction)?,
            Keyword::Copy | Keyword::Add => self.copy(stage, image, instruction)?,
            Keyword::Workdir => self.workdir(image, instruction)?,
            Keyword::Arg => {
                for word in words(instruction) {
                    let vars = self.vars(image);
                    self.scope.mark_used(&word);
                    self.scope
                        .declare(&word, &self.lexer, &vars)
                        .map_err(|e| self.error(instruction, e.to_string()))?;
                }
                (
                    // Keyed on what is written: the values reach the key of
                    // each RUN that sees them (its `|N K=V` prefix), so a new
                    // value rebuilds from the first such RUN, not from here.
                    format!("ARG {}", words(instruction).join(" ")),
                    Done::Config,
                )
            }
            _ => (self.config_instruction(image, instruction)?, Done::Config),
        };
        let text = match &done {
            Done::Config => created_by.clone(),
            Done::Files { layer, .. } => format!(
                "{created_by}|{}",
                layer
                    .as_ref()
                    .map_or("none".into(), |l| l.diff_id.to_string())
            ),
        };
        image.key = cache::key(&image.key, &[&text]);
        let mut created = now();
        let empty_layer = match done {
            Done::Config => {
                // Nothing to skip, but the key tells whether this point of
                // the build was reached before, as the classic builder shows.
                let seen = match self.use_cache {
                    true => self.cache.lookup(&self.store, &self.layers, &image.key),
                    false => None,
                };
                match seen {
                    Some(step) => {
                        self.out.line(" ---> CACHED");
                        created = step.created;
                    }
                    None => {
                        self.cache.save(
                            &image.key,
                            &CachedStep {
                                layer: None,
                                created: created.clone(),
                            },
                        );
                        self.out.line(&format!(" ---> {}", seconds(started)));
                    }
                }
                true
            }
            Done::Files {
                layer,
                cached,
                created: made,
            } => {
                created = made;
                let what = match &layer {
                    Some(l) => l.diff_id.short().to_string(),
                    None => "no files changed".into(),
                };
                if cached {
                    self.out.line(&format!(" ---> CACHED {what}"));
                } else {
                    self.out
                        .line(&format!(" ---> {what} ({})", seconds(started)));
                }
                let empty = layer.is_none();
                image.layers.extend(layer.map(|l| *l));
                empty
            }
        };
        if instruction.keyword == Keyword::Arg {
            return Ok(()); // buildkit writes no history line for ARG
        }
        // A step from the cache keeps the date it was made: a build where
        // nothing changed gives the very same config, so the same image ID.
        image.config.history.push(History {
            created: Some(created),
            created_by: Some(created_by),
            comment: None,
            empty_layer,
        });
        Ok(())
    }
    // ANCHOR_END: instruction

    // ANCHOR: filesystem_step
    /// A step that changes files: looked up in the cache by `key`; else
    /// `work` runs in a root filesystem over the layers so far, and what
    /// it changed becomes the step's layer (kept in the cache).
    fn filesystem_step(
        &mut self,
        image: &StageImage,
        key: &Digest,
        work: impl FnOnce(&mut Self, &StepRoot) -> Result<Stubs>,
    ) -> Result<Done> {
        if self.use_cache {
            if let Some(hit) = self.cache.lookup(&self.store, &self.layers, key) {
                return Ok(Done::Files {
                    layer: hit.layer.map(Box::new),
                    cached: true,
                    created: hit.created,
                });
            }
        }
        let dir = self.workspace.next_step();
        let root = StepRoot::mount(&self.globals.root, &self.store, &image.layers, &dir)?;
        let stubs = work(self, &root)?;
        let layer = root.finish(&self.store, &stubs)?;
        let _ = ch02_layers::unpack::remove_any(&dir);
        let created = now();
        self.cache.save(
            key,
            &CachedStep {
                layer: layer.clone(),
                created: created.clone(),
            },
        );
        Ok(Done::Files {
            layer: layer.map(Box::new),
            cached: false,
            created,
        })
    }
    // ANCHOR_END: filesystem_step

    // ANCHOR: run
    /// RUN: the command in a container over the layers so far.
    fn run(
        &mut self,
        stage: &Stage,
        image: &StageImage,
        instruction: &Instruction,
    ) -> Result<(String, Done)> {
        let shell = image.shell();
        let mut heredoc_script = None;
        let args: Vec<String> = match &instruction.args {
            Args::Exec(items) => items.clone(),
            Args::Shell(text) if instruction.heredocs.is_empty() => {
                shell.iter().cloned().chain([text.clone()]).collect()
            }
            Args::Shell(text) => {
                let only_heredoc = instruction.heredocs.len() == 1
                    && text
                        .trim()
                        .trim_start_matches("<<")
                        .trim_start_matches('-')
                        .trim_matches(|c| c == '\'' || c == '"')
                        == instruction.heredocs[0].name;
                let first = &instruction.heredocs[0];
                if only_heredoc && first.body().starts_with("#!") {
                    // A script with its own interpreter: run it as a file.
                    heredoc_script = Some(first.body());
                    vec![HEREDOC_SCRIPT.to_string()]
                } else if only_heredoc {
                    shell.iter().cloned().chain([first.body()]).collect()
                } else {
                    // `RUN python3 <<EOF`: the shell reads the heredocs.
                    let mut script = text.clone();
                    for heredoc in &instruction.heredocs {
                        script.push('\n');
                        script.push_str(&heredoc.content);
                        script.push_str(&heredoc.name);
                    }
                    shell.iter().cloned().chain([script]).collect()
                }
            }
            _ => return Err(self.error(instruction, "RUN needs a command")),
        };
        let (mounts, mount_keys) = self.run_mounts(stage, image, instruction)?;
        let in_scope = self.scope.args_in_scope();
        let prefix = match in_scope.len() {
            0 => String::new(),
            n => format!("|{n} {} ", in_scope.join(" ")),
        };
        let created_by = format!("RUN {prefix}{}", args.join(" "));
        let mut parts = vec![created_by.clone()];
        parts.extend(instruction.flags.iter().map(|f| f.to_string()));
        parts.extend(mount_keys);
        parts.extend(heredoc_script.clone());
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let key = cache::key(&image.key, &parts);
        let network = instruction.flag("network").unwrap_or("default").to_string();
        if !["default", "host", "none"].contains(&network.as_str()) {
            return Err(self.error(
                instruction,
                format!("RUN --network={network}: use default, host or none"),
            ));
        }
        let extra_env = self.scope.run_env(&image.env());
        let cgroup = self.workspace.cgroup_id();
        let shown = args.join(" ");
        let done = self.filesystem_step(image, &key, |build, root| {
            build
                .out
                .line(&format!(" ---> Running in {}", root_name(root)));
            let mut mounts = mounts;
            if let Some(script) = &heredoc_script {
                let path = build.workspace.dir.join("heredoc-script");
                std::fs::write(&path, script)
                    .map_err(|e| Error::new(format!("writing {}: {e}", path.display())))?;
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
                // Not `Mount::bind_file`, which is `noexec`: this file runs.
                let host = path.display().to_string();
                mounts.push(Mount::new(
                    HEREDOC_SCRIPT,
                    "bind",
                    &host,
                    &["bind", "ro", "nosuid", "nodev"],
                ));
            }
            let step = RunStep {
                args,
                config: image.run_config(),
                extra_env,
                cgroup,
                mounts,
                own_network: network == "none",
            };
            // With -q the step's output is kept aside, shown only if it fails.
            let log = build
                .out
                .quiet
                .then(|| build.workspace.dir.join("output.log"));
            let prefix = format!(" {}/{} | ", build.step, build.total);
            let result = match &log {
                Some(log) => step::with_output_to(log, || step::run(root, step)),
                None => step::with_prefixed_output(&prefix, || step::run(root, step)),
            };
            let failed = !matches!(result, Ok((0, _)));
            if let (true, Some(log)) = (failed, &log) {
                eprint!("{}", std::fs::read_to_string(log).unwrap_or_default());
            }
            let place = format!("{}:{}", build.plan.file, instruction.line);
            let (code, stubs) = result.map_err(|e| {
                Error::new(format!("{place}: {}", e.message())).with_exit_code(e.exit_code())
            })?;
            if code != 0 {
                return Err(Error::new(format!(
                    "{place}: The command '{shown}' returned a non-zero code: {code}"
                ))
                .with_exit_code(code));
            }
            Ok(stubs)
        })?;
        Ok((created_by, done))
    }
    // ANCHOR_END: run

    /// `RUN --mount=type=bind|cache|tmpfs,…`: the mounts, and what of
    /// them enters the cache key (a bind mount's content).
    fn run_mounts(
        &self,
        _stage: &Stage,
        image: &StageImage,
        instruction: &Instruction,
    ) -> Result<(Vec<Mount>, Vec<String>)> {
        let mut mounts = Vec::new();
        let mut keys = Vec::new();
        for flag in instruction.flags.iter().filter(|f| f.name == "mount") {
            let spec = flag.value.clone().unwrap_or_default();
            let mut fields: BTreeMap<String, String> = BTreeMap::new();
            for part in spec.split(',') {
                let (k, v) = part.split_once('=').unwrap_or((part, "true"));
                fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
            let kind = fields.get("type").map(String::as_str).unwrap_or("bind");
            let target = fields
                .get("target")
                .or_else(|| fields.get("dst"))
                .or_else(|| fields.get("destination"))
                .cloned()
                .ok_or_else(|| {
                    self.error(
                        instruction,
                        format!("RUN --mount={spec}: name its target=PATH"),
                    )
                })?;
            let target = absolute_in(&image.workdir(), &target);
            match kind {
                "bind" => {
                    if fields.contains_key("from") {
                        return Err(self.error(instruction, "RUN --mount=type=bind,from=… is not supported here: COPY --from the files first"));
                    }
                    let source = fields.get("source").or_else(|| fields.get("src")).cloned().unwrap_or(".".into());
                    let sources = self.context.resolve(&source).map_err(|e| self.error(instruction, e.message().replace("COPY failed", "RUN --mount")))?;
                    let [source] = sources.as_slice() else {
                        return Err(self.error(instruction, format!("RUN --mount: source {source} names several files")));
                    };
                    keys.push(format!("bind {target} {}", self.context.checksum(&sources)?));
                    let read_write = fields.contains_key("rw") || fields.contains_key("readwrite");
                    if read_write {
                        return Err(self.error(instruction, "RUN --mount=type=bind,rw is not supported here: its writes would reach the build context"));
                    }
                    if source.metadata.file_type().is_symlink() {
                        // A bind mount follows a symlink on the host: the
                        // link could name any host file.
                        return Err(self.error(instruction, format!("RUN --mount: source {} is a symbolic link: name what it points to", source.relative.display())));
                    }
                    let host = source.path.display().to_string();
                    mounts.push(Mount::new(&target, "bind", &host, &["rbind", "ro", "nosuid", "nodev"]));
                }
                "cache" => {
                    let id = fields.get("id").cloned().unwrap_or_else(|| target.clone());
                    let dir = self
                        .globals
                        .root
                        .join("build-cache")
                        .join("mounts")
                        .join(Digest::of(id.as_bytes()).hex());
                    std::fs::create_dir_all(&dir).map_err(|e| Error::new(format!("creating {}: {e}", dir.display())))?;
                    mounts.push(Mount::new(&target, "bind", &dir.display().to_string(), &["rbind", "rw", "nosuid", "nodev"]));
                }
                "tmpfs" => {
                    let mut options = vec!["nosuid", "nodev"];
                    let size = fields.get("size").map(|s| format!("size={s}"));
                    if let Some(size) = &size {
                        options.push(size);
                    }
                    mounts.push(Mount::new(&target, "tmpfs", "tmpfs", &options));
                }
                other => {
                    return Err(self.error(
                        instruction,
                        format!("RUN --mount=type={other} is not supported here (bind, cache and tmpfs are)"),
                    ))
                }
            }
        }
        Ok((mounts, keys))
    }

    // ANCHOR: copy
    /// COPY and ADD: files from the context, a heredoc, another stage or
    /// an image, written into the layers so far.
    fn copy(
        &mut self,
        stage: &Stage,
        image: &StageImage,
        instruction: &Instruction,
    ) -> Result<(String, Done)> {
        let keyword = instruction.keyword.as_str();
        let mut words: Vec<String> = match &instruction.args {
            Args::Exec(items) | Args::Words(items) => items.clone(),
            _ => Vec::new(),
        };
        if words.len() < 2 {
            return Err(self.error(
                instruction,
                format!("{keyword} needs a source and a destination ({keyword} SRC… DEST)"),
            ));
        }
        let dest_written = words.pop().expect("two words at least");
        let dest = self.expand(image, instruction, &dest_written)?;
        let dest = absolute_in(&image.workdir(), &dest);
        let mut sources = Vec::new();
        for word in &words {
            sources.push(self.expand(image, instruction, word)?);
        }
        let heredoc_names: Vec<&str> = instruction
            .heredocs
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        let is_heredoc = |s: &str| {
            s.starts_with("<<")
                && heredoc_names.contains(
                    &s.trim_start_matches("<<")
                        .trim_start_matches('-')
                        .trim_matches(|c| c == '\'' || c == '"'),
                )
        };
        if instruction.keyword == Keyword::Add {
            if let Some(url) = sources
                .iter()
                .find(|s| s.contains("://") || s.starts_with("git@"))
            {
                return Err(self.error(
                    instruction,
                    format!("ADD from a URL is not supported here ({url}): fetch it in a RUN step or COPY it from the context"),
                ));
            }
        }
        let options = CopyOptions {
            chown: None,
            chmod: match instruction.flag("chmod") {
                Some(mode) => Some(u32::from_str_radix(mode, 8).map_err(|_| {
                    self.error(
                        instruction,
                        format!("invalid --chmod={mode}: give octal digits, e.g. 755"),
                    )
                })?),
                None => None,
            },
        };
        let chown = instruction.flag("chown").map(|c| c.to_string());
        // Where the sources come from, and what of them enters the key.
        let from = stage::copy_from(instruction).map(|s| s.to_string());
        let (source_key, from_root) = match &from {
            None => {
                let plain: Vec<String> =
                    sources.iter().filter(|s| !is_heredoc(s)).cloned().collect();
                let mut resolved = Vec::new();
                for source in &plain {
                    let found = self.context.resolve(source).map_err(|e| {
                        self.error(instruction, e.message().replace("COPY", keyword))
                    })?;
                    resolved.extend(found);
                }
                let mut key = self.context.checksum(&resolved)?.to_string();
                for heredoc in &instruction.heredocs {
                    key.push_str(&heredoc.content);
                }
                (key, None)
            }
            Some(from) => match self
                .plan
                .stage_named(from, stage.index, instruction.line)
                .map_err(parse_error)?
            {
                Some(index) => (
                    format!("stage {}", self.done[&index].key),
                    Some(self.done[&index].layers.clone()),
                ),
                None => {
                    let base = self.base_image(stage, from)?;
                    (format!("image {}", base.key), Some(base.layers))
                }
            },
        };
        let flags: Vec<String> = instruction.flags.iter().map(|f| f.to_string()).collect();
        let created_by = format!(
            "{keyword} {}{} {dest}",
            flags.iter().map(|f| format!("{f} ")).collect::<String>(),
            sources.join(" ")
        );
        let key = cache::key(&image.key, &[&created_by, &source_key]);
        if sources.len() > 1 && !dest.ends_with('/') {
            return Err(self.error(
                instruction,
                format!("When using {keyword} with more than one source file, the destination must be a directory and end with a /"),
            ));
        }
        let done = self.filesystem_step(image, &key, |build, root| {
            let merged = root.merged();
            let mut options = options;
            if let Some(chown) = &chown {
                options.chown = Some(build.chown_ids(&merged, instruction, chown)?);
            }
            let source_root = match from_root {
                Some(layers) => Some(SourceRoot::mount(build, &layers)?),
                None => None,
            };
            let heredoc_dir = build.workspace.dir.join("heredocs");
            for source in &sources {
                if is_heredoc(source) {
                    let name = source
                        .trim_start_matches("<<")
                        .trim_start_matches('-')
                        .trim_matches(|c| c == '\'' || c == '"');
                    let heredoc = instruction
                        .heredocs
                        .iter()
                        .find(|h| h.name == name)
                        .expect("a heredoc source has its heredoc");
                    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                        // The name becomes a file name, in a directory of ours.
                        return Err(build.error(
                            instruction,
                            format!("heredoc name {name:?} cannot be a file name: use a plain word such as EOF"),
                        ));
                    }
                    let body = if heredoc.expand {
                        Lexer::heredoc(build.lexer.escape)
                            .expand_word(&heredoc.body(), &build.vars(image))
                            .map_err(|e| build.error(instruction, e.to_string()))?
                    } else {
                        heredoc.body()
                    };
                    let _ = ch02_layers::unpack::remove_any(&heredoc_dir);
                    std::fs::create_dir_all(&heredoc_dir).map_err(|e| {
                        Error::new(format!("creating {}: {e}", heredoc_dir.display()))
                    })?;
                    std::fs::write(heredoc_dir.join(name), body)
                        .map_err(|e| Error::new(format!("writing a heredoc: {e}")))?;
                    let context = Context::build_context(&heredoc_dir, Ignore::none())?;
                    let found = context.resolve(name)?;
                    copy::copy_into(&merged, &context, &found, &dest, &options)
                        .map_err(|e| build.error(instruction, e.message().to_string()))?;
                    continue;
                }
                let other_root;
                let context = match &source_root {
                    Some(root) => {
                        other_root = Context::root_filesystem(&root.merged());
                        &other_root
                    }
                    None => &build.context,
                };
                let found = context
                    .resolve(source)
                    .map_err(|e| build.error(instruction, e.message().replace("COPY", keyword)))?;
                if instruction.keyword == Keyword::Add && from.is_none() {
                    let mut rest = Vec::new();
                    for item in found {
                        let extracted = item.path.is_file()
                            && copy::add_archive(&merged, &item.path, &dest)
                                .map_err(|e| build.error(instruction, e.message().to_string()))?;
                        if !extracted {
                            rest.push(item);
                        }
                    }
                    if !rest.is_empty() {
                        copy::copy_into(&merged, context, &rest, &dest, &options)
                            .map_err(|e| build.error(instruction, e.message().to_string()))?;
                    }
                } else {
                    copy::copy_into(&merged, context, &found, &dest, &options)
                        .map_err(|e| build.error(instruction, e.message().to_string()))?;
                }
            }
            Ok(Stubs::default())
        })?;
        Ok((created_by, done))
    }
    // ANCHOR_END: copy

    /// `--chown=user[:group]`, looked up in the stage's /etc/passwd and
    /// /etc/group (not the host's).
    fn chown_ids(
        &self,
        merged: &Path,
        instruction: &Instruction,
        chown: &str,
    ) -> Result<(u32, u32)> {
        let etc = ch02_layers::contain::resolve_in_root(merged, &["etc".into()], true)?;
        let ids = ch03_run::user::resolve(chown, &etc)
            .map_err(|e| self.error(instruction, format!("--chown={chown}: {e}")))?;
        Ok((ids.uid, ids.gid))
    }

    /// WORKDIR: the config's working directory, relative to the previous
    /// one, and the directory itself, made if missing (a layer if so).
    fn workdir(
        &mut self,
        image: &mut StageImage,
        instruction: &Instruction,
    ) -> Result<(String, Done)> {
        let Args::Text(text) = &instruction.args else {
            return Err(self.error(instruction, "WORKDIR needs a path"));
        };
        let path = self.expand(image, instruction, text)?;
        let path = clean_path(&absolute_in(&image.workdir(), &path));
        image.config.config.working_dir = Some(path.clone());
        let created_by = format!("WORKDIR {path}");
        let key = cache::key(&image.key, &[&created_by]);
        let done = self.filesystem_step(image, &key, |_, root| {
            let parts = ch02_layers::contain::entry_components(Path::new(&path))?;
            let mut resolver = ch02_layers::contain::Resolver::new(&root.merged());
            let dir = resolver.resolve(&parts, true)?;
            resolver.make_dirs(&dir)?;
            Ok(Stubs::default())
        })?;
        Ok((created_by, done))
    }

    // ANCHOR: config_instructions
    /// The instructions that only change the config.
    fn config_instruction(
        &mut self,
        image: &mut StageImage,
        instruction: &Instruction,
    ) -> Result<String> {
        let config = &mut image.config.config;
        let keyword = instruction.keyword;
        match (keyword, &instruction.args) {
            (Keyword::Env | Keyword::Label, Args::Pairs(pairs)) => {
                // Every value sees the variables as they were before this
                // line: `ENV a=1 b=$a` gives b the *old* a.
                let vars = self.scope.stage_env(&config.env.clone().unwrap_or_default());
                let mut shown = Vec::new();
                for Pair { key, value, .. } in pairs {
                    let key = self.lexer.expand_word(key, &vars).map_err(|e| at(&self.plan, instruction, e.to_string()))?;
                    let value = self.lexer.expand_word(value, &vars).map_err(|e| at(&self.plan, instruction, e.to_string()))?;
                    shown.push(format!("{key}={}", shell_quote_value(&value)));
                    if keyword == Keyword::Env {
                        let env = config.env.get_or_insert_with(Vec::new);
                        ch03_run::spec::merge_env(env, &[format!("{key}={value}")]);
                    } else {
                        config.labels.get_or_insert_with(BTreeMap::new).insert(key, value);
                    }
                }
                Ok(format!("{keyword} {}", shown.join(" ")))
            }
            (Keyword::Cmd | Keyword::Entrypoint, args) => {
                let command = match args {
                    Args::Exec(items) => Some(items.clone()),
                    Args::Shell(text) => Some(image_shell(&config.other).into_iter().chain([text.clone()]).collect()),
                    _ => None,
                };
                let shown = serde_json::to_string(&command.clone().unwrap_or_default()).unwrap_or_default();
                if keyword == Keyword::Cmd {
                    config.cmd = command;
                    image.cmd_set = true;
                } else {
                    config.entrypoint = command;
                    // A new ENTRYPOINT resets a CMD inherited from the base
                    // image (it was meant for the old entrypoint).
                    if !image.cmd_set {
                        config.cmd = None;
                    }
                }
                Ok(format!("{keyword} {shown}"))
            }
            (Keyword::User | Keyword::Stopsignal | Keyword::Maintainer, Args::Text(text)) => {
                let vars = self.scope.stage_env(&config.env.clone().unwrap_or_default());
                let value = self.lexer.expand_word(text, &vars).map_err(|e| at(&self.plan, instruction, e.to_string()))?;
                match keyword {
                    Keyword::User => config.user = Some(value.clone()),
                    Keyword::Stopsignal => config.stop_signal = Some(value.clone()),
                    _ => {
                        eprintln!(
                            "{}:{}: MAINTAINER is deprecated: use LABEL org.opencontainers.image.authors=\"{value}\"",
                            self.plan.file, instruction.line
                        );
                        image.config.author = Some(value.clone());
                    }
                }
                Ok(format!("{keyword} {value}"))
            }
            (Keyword::Expose | Keyword::Volume, args) => {
                let vars = self.scope.stage_env(&config.env.clone().unwrap_or_default());
                let mut values = Vec::new();
                let written = match args {
                    Args::Exec(items) | Args::Words(items) => items.clone(),
                    _ => Vec::new(),
                };
                for word in written {
                    values.extend(self.lexer.expand_words(&word, &vars).map_err(|e| at(&self.plan, instruction, e.to_string()))?);
                }
                if values.is_empty() {
                    return Err(at(&self.plan, instruction, format!("{keyword} needs at least one argument")));
                }
                if keyword == Keyword::Expose {
                    let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
                    for value in &values {
                        for port in expand_ports(value).map_err(|e| at(&self.plan, instruction, e))? {
                            ports.insert(port, json!({}));
                        }
                    }
                } else {
                    let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
                    for value in &values {
                        volumes.insert(value.clone(), json!({}));
                    }
                }
                Ok(format!("{keyword} {}", values.join(" ")))
            }
            (Keyword::Shell, Args::Exec(items)) if !items.is_empty() => {
                config.other.insert("Shell".into(), json!(items));
                Ok(format!("SHELL {}", serde_json::to_string(items).unwrap_or_default()))
            }
            (Keyword::Shell, _) => Err(at(&self.plan, instruction, "SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/bash\", \"-c\"]".into())),
            (Keyword::Healthcheck, Args::Health { kind, command }) => {
                let check = healthcheck(kind, command, instruction, &image_shell(&config.other))
                    .map_err(|e| at(&self.plan, instruction, e))?;
                config.other.insert("Healthcheck".into(), check.clone());
                Ok(format!("HEALTHCHECK {check}"))
            }
            (Keyword::Onbuild, Args::Onbuild(trigger)) => {
                let text = trigger.original.trim().to_string();
                let text = text
                    .split_once(char::is_whitespace)
                    .filter(|(first, _)| first.eq_ignore_ascii_case("ONBUILD"))
                    .map(|(_, rest)| rest.trim().to_string())
                    .unwrap_or(text);
                let mut body = text.clone();
                for heredoc in &instruction.heredocs {
                    body.push('\n');
                    body.push_str(&heredoc.content);
                    body.push_str(&heredoc.name);
                }
                let triggers = config.other.entry("OnBuild").or_insert_with(|| json!([]));
                if let Value::Array(list) = triggers {
                    list.push(Value::String(body));
                }
                Ok(format!("ONBUILD {text}"))
            }
            _ => Err(at(&self.plan, instruction, format!("{keyword}: arguments not understood: {}", instruction.original.trim()))),
        }
    }
    // ANCHOR_END: config_instructions
}

// ANCHOR: flags
/// The flags each instruction takes. Anything else is a typo or a feature
/// this builder does not have: refused, never ignored.
fn check_flags(instruction: &Instruction) -> std::result::Result<(), String> {
    let allowed: &[&str] = match instruction.keyword {
        Keyword::From => &["platform"],
        Keyword::Run => &["mount", "network"],
        Keyword::Copy => &["from", "chown", "chmod", "link"],
        Keyword::Add => &["chown", "chmod", "link"],
        Keyword::Healthcheck => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    };
    for flag in &instruction.flags {
        if !allowed.contains(&flag.name.as_str()) {
            let known = match allowed {
                [] => format!("{} takes no flags", instruction.keyword),
                _ => format!(
                    "{} takes {}",
                    instruction.keyword,
                    allowed
                        .iter()
                        .map(|f| format!("--{f}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Err(format!("unknown flag: {flag} ({known})"));
        }
    }
    Ok(())
}
// ANCHOR_END: flags

/// Where the sandbox's files of a RUN heredoc script are bound.
const HEREDOC_SCRIPT: &str = "/dev/crabbox-heredoc-script";

fn root_name(root: &StepRoot) -> String {
    root.merged()
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The SHELL recorded in a config, or `/bin/sh -c`.
fn image_shell(other: &serde_json::Map<String, Value>) -> Vec<String> {
    match other.get("Shell") {
        Some(Value::Array(words)) => words
            .iter()
            .filter_map(|w| w.as_str().map(str::to_string))
            .collect(),
        _ => DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
    }
}

/// The base image's ONBUILD triggers, taken out of the config: they run in
/// this build and are not passed on to the next generation.
fn take_triggers(config: &mut RunConfig) -> Vec<String> {
    match config.other.remove("OnBuild") {
        Some(Value::Array(list)) => list
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// A value as `history` shows it: quoted when it has blanks.
fn shell_quote_value(value: &str) -> String {
    if value.is_empty() || value.contains(char::is_whitespace) {
        format!("{value:?}")
    } else {
        value.to_string()
    }
}

/// `dest` made absolute against `workdir`, keeping a trailing `/`.
fn absolute_in(workdir: &str, dest: &str) -> String {
    if dest.starts_with('/') {
        dest.to_string()
    } else {
        let base = workdir.trim_end_matches('/');
        match dest {
            "." | "./" => format!("{base}/"),
            _ => format!("{base}/{}", dest.trim_start_matches("./")),
        }
    }
}

/// `/a/./b/../c/` → `/a/c`.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `80` → `80/tcp`; `53/udp`; `8000-8002` → three ports.
fn expand_ports(value: &str) -> std::result::Result<Vec<String>, String> {
    let (ports, protocol) = value.split_once('/').unwrap_or((value, "tcp"));
    let protocol = protocol.to_ascii_lowercase();
    if !["tcp", "udp", "sctp"].contains(&protocol.as_str()) {
        return Err(format!(
            "invalid protocol in EXPOSE {value}: tcp, udp or sctp"
        ));
    }
    let number = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("invalid port in EXPOSE {value}: a number from 1 to 65535"))
    };
    let (first, last) = match ports.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => (number(ports)?, number(ports)?),
    };
    if last < first {
        return Err(format!("invalid port range in EXPOSE {value}"));
    }
    Ok((first..=last).map(|p| format!("{p}/{protocol}")).collect())
}

/// HEALTHCHECK as docker records it: `Test` and durations in nanoseconds.
fn healthcheck(
    kind: &str,
    command: &Args,
    instruction: &Instruction,
    shell: &[String],
) -> std::result::Result<Value, String> {
    if kind.eq_ignore_ascii_case("NONE") {
        return Ok(json!({ "Test": ["NONE"] }));
    }
    let test: Vec<String> = match command {
        Args::Exec(items) => std::iter::once("CMD".to_string())
            .chain(items.iter().cloned())
            .collect(),
        Args::Shell(text) => vec!["CMD-SHELL".into(), text.clone()],
        _ => return Err("HEALTHCHECK CMD needs a command".into()),
    };
    let _ = shell;
    let mut check = serde_json::Map::new();
    check.insert("Test".into(), json!(test));
    for (flag, field) in [
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ] {
        if let Some(text) = instruction.flag(flag) {
            check.insert(
                field.into(),
                json!(duration_nanos(text)
                    .ok_or_else(|| format!("invalid --{flag}={text}: e.g. 30s, 1m30s"))?),
            );
        }
    }
    if let Some(retries) = instruction.flag("retries") {
        check.insert(
            "Retries".into(),
            json!(retries
                .parse::<u64>()
                .map_err(|_| format!("invalid --retries={retries}"))?),
        );
    }
    Ok(Value::Object(check))
}

/// Go's duration syntax (`1m30s`, `500ms`) in nanoseconds.
fn duration_nanos(text: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    Some(total as u64)
}

/// Another stage's (or image's) files, mounted read-only for `COPY --from`.
struct SourceRoot {
    root: StepRoot,
}

impl SourceRoot {
    fn mount(build: &mut Build, layers: &[Layer]) -> Result<SourceRoot> {
        let dir = build.workspace.next_step();
        Ok(SourceRoot {
            root: StepRoot::mount(&build.globals.root, &build.store, layers, &dir)?,
        })
    }

    fn merged(&self) -> PathBuf {
        self.root.merged()
    }
}

// ANCHOR: commit
/// Commits the target stage as an OCI image in chapter 1's store, named
/// by each tag (by its ID alone without one). Returns the image ID.
fn commit(
    build: &Build,
    mut image: StageImage,
    labels: &[String],
    tags: &[String],
) -> Result<Digest> {
    for label in labels {
        let (key, value) = label
            .split_once('=')
            .ok_or_else(|| Error::new(format!("invalid --label {label:?}: write KEY=VALUE")))?;
        image
            .config
            .config
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
    }
    // The date of its last step: a rebuild that changed nothing is the
    // same image, with the same ID.
    image.config.created = image
        .config
        .history
        .last()
        .and_then(|h| h.created.clone())
        .or_else(|| Some(now()));
    image.config.rootfs = RootFs {
        kind: "layers".into(),
        diff_ids: image.layers.iter().map(|l| l.diff_id.clone()).collect(),
    };
    let bytes = serde_json::to_vec(&image.config).expect("a config serializes");
    let descriptors: Vec<_> = image.layers.iter().map(|l| l.descriptor.clone()).collect();
    let id = Digest::of(&bytes);
    let mut names = Vec::new();
    for tag in tags {
        let reference = Reference::parse(tag).map_err(|e| {
            Error::new(format!(
                "invalid tag {tag:?}: {} — write NAME[:TAG]",
                e.message()
            ))
        })?;
        names.push(reference.store_name());
    }
    if names.is_empty() {
        names.push(id.to_string());
    }
    for name in names {
        build.store.commit_image(&name, &bytes, &descriptors)?;
    }
    Ok(id)
}
// ANCHOR_END: commit

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_paths_and_durations() {
        assert_eq!(expand_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(expand_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(expand_ports("8000-8002").unwrap().len(), 3);
        assert!(expand_ports("http").is_err());
        assert_eq!(absolute_in("/app", "src/"), "/app/src/");
        assert_eq!(absolute_in("/", "x"), "/x");
        assert_eq!(absolute_in("/app", "."), "/app/");
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
        assert_eq!(duration_nanos("1m30s"), Some(90_000_000_000));
        assert_eq!(duration_nanos("500ms"), Some(500_000_000));
        assert_eq!(duration_nanos("5x"), None);
        assert!(now().ends_with('Z') && now().len() == 20);
    }
}
