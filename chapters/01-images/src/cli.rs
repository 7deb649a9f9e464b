//! The command line of chapter 01, built so later chapters can reuse it.
//!
//! Every chapter's binary has the commands of all chapters before it. This
//! module is the extension point: [`GlobalArgs`] are the flags every
//! binary takes, [`ImageCommand`] the image commands, which a later chapter
//! flattens into its own command enum, and [`run_image_command`] runs one.
//! [`image_or_pull`] is what a later command that needs an image calls:
//! the image from the store, or pulled first.

use crate::archive;
use crate::auth::{self, Credentials};
use crate::error::{Error, ErrorKind, Result};
use crate::explain;
use crate::platform::Platform;
use crate::pull::{pull, PullOptions};
use crate::reference::{Reference, DOCKER_HUB};
use crate::registry::{Registry, RegistryOptions};
use crate::store::{Image, Store};
use crate::table::{human_age, human_size, render};
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::PathBuf;

/// Flags every chapter binary takes.
#[derive(Args, Clone, Debug)]
pub struct GlobalArgs {
    /// Engine root: images, layers, containers, volumes live here
    #[arg(
        long,
        global = true,
        env = "CRABBOX_ROOT",
        default_value = "/var/lib/crabbox",
        value_name = "DIR",
        value_parser = absolute_path
    )]
    pub root: PathBuf,
    /// Narrate every step with the shell command that does the same (also CRABBOX_EXPLAIN=1)
    #[arg(long, global = true)]
    pub explain: bool,
    /// Reach this registry over plain HTTP (repeatable; also CRABBOX_INSECURE_REGISTRIES=a,b)
    #[arg(long = "insecure-registry", global = true, value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

/// The engine root is kept absolute: mounts and containers must not depend
/// on the directory the command was started in.
fn absolute_path(value: &str) -> std::result::Result<PathBuf, String> {
    std::path::absolute(value).map_err(|e| format!("{value}: {e}"))
}

impl GlobalArgs {
    /// Applies the flags that change the whole process (`--explain`), and
    /// checks the engine root: every command of every chapter goes through
    /// here, so a root that cannot be one fails them all alike (exit 125).
    pub fn apply(&self) {
        if let Err(e) = self.check_root() {
            eprintln!("{e}");
            std::process::exit(crate::error::ENGINE_FAILURE);
        }
        // Die quietly when the reader of our output goes away (`| head`),
        // as other command-line tools do, instead of failing to print.
        // SAFETY: setting a signal disposition to its default is always sound.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
        let from_env = std::env::var("CRABBOX_EXPLAIN").is_ok_and(|v| !v.is_empty() && v != "0");
        if self.explain || from_env {
            explain::enable();
        }
    }

    pub fn store(&self) -> Result<Store> {
        Store::open(&self.root)
    }

    /// The engine root must be a directory, or not exist yet (it is made
    /// on first use). A file there would otherwise make `ps` and `prune`
    /// silently find nothing, and other commands fail each their own way.
    pub fn check_root(&self) -> Result<()> {
        crate::engine_root::check(&self.root)
    }

    pub fn registry_options(&self) -> RegistryOptions {
        RegistryOptions::from_env(self.insecure_registries.clone())
    }
}

// ANCHOR: image_or_pull
/// The image from the store, or pulled first as docker does ("Unable to
/// find image … locally"): what every command that works on an image's
/// content does (`mount` and `unpack` in chapter 2, `run` and `create` in
/// chapter 3). Pull messages go to stderr: stdout is the command's own
/// (a container's output, in chapter 3).
pub fn image_or_pull(globals: &GlobalArgs, store: &Store, name: &str) -> Result<Image> {
    match store.find(name) {
        Ok(Some(image)) => return Ok(image),
        Ok(None) => {}
        // `rmi -f` of it right now: its blobs went after its name was read.
        // Said in one line of its own, which a caller may reword.
        Err(e) => {
            return Err(match store.find(name) {
                Ok(None) => Error::new(format!(
                    "the image {name} was removed (rmi -f) while this command was reading it — pull it again"
                ))
                .with_kind(ErrorKind::ImageRemoved),
                _ => e,
            })
        }
    }
    let reference = Reference::parse(name)?;
    eprintln!("Unable to find image '{}' locally", reference.familiar());
    with_stdout_on_stderr(|| {
        pull(
            store,
            &reference,
            &globals.registry_options(),
            &PullOptions::default(),
        )
    })
}

/// Runs `f` with file descriptor 1 pointing at stderr, then puts it back.
fn with_stdout_on_stderr<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let saved = nix::unistd::dup(1).map_err(|e| Error::new(format!("dup stdout: {e}")))?;
    let _ = std::io::stdout().flush();
    nix::unistd::dup2(std::io::stderr().as_raw_fd(), 1)
        .map_err(|e| Error::new(format!("dup2: {e}")))?;
    let result = f();
    let _ = std::io::stdout().flush();
    let _ = nix::unistd::dup2(saved, 1);
    let _ = nix::unistd::close(saved);
    result
}
// ANCHOR_END: image_or_pull

// ANCHOR: commands
/// The image commands (chapter 01).
#[derive(Subcommand, Clone, Debug)]
pub enum ImageCommand {
    /// Download an image from a registry
    Pull {
        /// Pull the image for this platform (os/arch[/variant]) instead of this machine's
        #[arg(long)]
        platform: Option<String>,
        /// Print only the image's name
        #[arg(short, long)]
        quiet: bool,
        /// The image, e.g. busybox, alpine:3.20, localhost:5000/app@sha256:…
        image: String,
    },
    /// List the images in the store
    Images {
        /// Show only image IDs
        #[arg(short, long)]
        quiet: bool,
        /// Show digests
        #[arg(long)]
        digests: bool,
        /// Do not truncate IDs
        #[arg(long)]
        no_trunc: bool,
    },
    /// Show an image's details as JSON
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove images (blobs still used by other images stay)
    Rmi {
        /// Remove an image ID even when several names point to it
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Save images to a tar archive (docker's format)
    Save {
        /// Write to this file
        #[arg(short, long)]
        output: PathBuf,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Load images from a tar archive made by save (or docker save)
    Load {
        /// Read from this file
        #[arg(short, long)]
        input: PathBuf,
        /// Print nothing
        #[arg(short, long)]
        quiet: bool,
    },
    /// Log in to a registry (credentials kept in ~/.docker/config.json)
    Login {
        /// Registry host, Docker Hub when omitted
        server: Option<String>,
        #[arg(short, long)]
        username: Option<String>,
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget the credentials of a registry
    Logout {
        /// Registry host, Docker Hub when omitted
        server: Option<String>,
    },
}
// ANCHOR_END: commands

/// The name of a command, for error messages (`pull: …`).
pub fn command_name(command: &ImageCommand) -> &'static str {
    match command {
        ImageCommand::Pull { .. } => "pull",
        ImageCommand::Images { .. } => "images",
        ImageCommand::Inspect { .. } => "inspect",
        ImageCommand::Rmi { .. } => "rmi",
        ImageCommand::Save { .. } => "save",
        ImageCommand::Load { .. } => "load",
        ImageCommand::Login { .. } => "login",
        ImageCommand::Logout { .. } => "logout",
    }
}

/// Examples shown at the end of `--help`.
pub const EXAMPLES: &str = "\
Examples:
  ch01-images pull busybox                       # from Docker Hub (docker.io/library/busybox:latest)
  ch01-images pull localhost:5000/busybox        # from a registry on this machine (plain HTTP)
  ch01-images pull --platform linux/arm64 alpine # another platform's build
  ch01-images --explain pull busybox             # see every HTTP request as a curl command
  ch01-images images
  ch01-images inspect busybox
  ch01-images save -o busybox.tar busybox && ch01-images load -i busybox.tar
  sudo ch01-images --root /tmp/crabbox images    # a separate engine root";

/// Runs one image command; returns the exit code (0: every command of
/// this chapter either works or fails with an error).
pub fn run_image_command(command: ImageCommand, globals: &GlobalArgs) -> Result<i32> {
    image_command(command, globals).map(|()| 0)
}

fn image_command(command: ImageCommand, globals: &GlobalArgs) -> Result<()> {
    match command {
        ImageCommand::Pull {
            platform,
            quiet,
            image,
        } => {
            let reference = Reference::parse(&image)?;
            let platform = platform.as_deref().map(Platform::parse).transpose()?;
            let store = globals.store()?;
            pull(
                &store,
                &reference,
                &globals.registry_options(),
                &PullOptions { platform, quiet },
            )?;
            Ok(())
        }
        ImageCommand::Images {
            quiet,
            digests,
            no_trunc,
        } => {
            print!(
                "{}",
                images_table(&globals.store()?, quiet, digests, no_trunc)?
            );
            Ok(())
        }
        ImageCommand::Inspect { images } => {
            let store = globals.store()?;
            let found: Vec<serde_json::Value> = images
                .iter()
                .map(|n| store.get(n).map(|i| inspect_json(&store, &i)))
                .collect::<Result<_>>()?;
            println!(
                "{}",
                serde_json::to_string_pretty(&found).expect("JSON values serialize")
            );
            Ok(())
        }
        ImageCommand::Rmi { force, images } => {
            let store = globals.store()?;
            for name in images {
                remove_image(&store, &name, force)?;
            }
            Ok(())
        }
        ImageCommand::Save { output, images } => archive::save(&globals.store()?, &images, &output),
        ImageCommand::Load { input, quiet } => {
            for line in archive::load(&globals.store()?, &input)? {
                if !quiet {
                    println!("{line}");
                }
            }
            Ok(())
        }
        ImageCommand::Login {
            server,
            username,
            password,
            password_stdin,
        } => login(globals, server, username, password, password_stdin),
        ImageCommand::Logout { server } => {
            let server = server.unwrap_or_else(|| DOCKER_HUB.to_string());
            if auth::store_credentials(&server, None)? {
                println!("Removing login credentials for {server}");
            } else {
                println!("Not logged in to {server}");
            }
            Ok(())
        }
    }
}

// ANCHOR: images_table
/// `images`: one row per name, as docker prints it.
pub fn images_table(store: &Store, quiet: bool, digests: bool, no_trunc: bool) -> Result<String> {
    let mut images = store.images()?;
    images.sort_by(|a, b| {
        b.config
            .created
            .cmp(&a.config.created)
            .then(a.name.cmp(&b.name))
    });
    let id = |i: &Image| {
        if no_trunc {
            i.id().to_string()
        } else {
            i.id().short().to_string()
        }
    };
    if quiet {
        return Ok(images.iter().map(|i| format!("{}\n", id(i))).collect());
    }
    let mut headers = vec!["REPOSITORY", "TAG"];
    if digests {
        headers.push("DIGEST");
    }
    headers.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let rows: Vec<Vec<String>> = images
        .iter()
        .map(|image| {
            let (repository, tag) = match image.reference() {
                Some(r) => (
                    r.familiar_repository(),
                    r.tag
                        .clone()
                        .filter(|_| r.digest.is_none())
                        .unwrap_or("<none>".into()),
                ),
                None => ("<none>".into(), "<none>".into()),
            };
            let mut row = vec![repository, tag];
            if digests {
                row.push(image.repo_digest());
            }
            row.extend([
                id(image),
                human_age(image.config.created.as_deref()),
                human_size(image.size()),
            ]);
            row
        })
        .collect();
    Ok(render(&headers, &rows))
}
// ANCHOR_END: images_table

/// `inspect`: the fields of `docker image inspect` that this store knows.
pub fn inspect_json(store: &Store, image: &Image) -> serde_json::Value {
    let reference = image.reference();
    let repo_tags: Vec<String> = reference
        .iter()
        .filter(|r| r.digest.is_none())
        .map(|r| r.familiar())
        .collect();
    let repo_digests: Vec<String> = reference
        .iter()
        .map(|r| format!("{}@{}", r.familiar_repository(), image.repo_digest()))
        .collect();
    let config = &image.config;
    let mut json = serde_json::json!({
        "Id": image.id(),
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Created": config.created,
        "Author": config.author.clone().unwrap_or_default(),
        "Config": config.config,
        "Architecture": config.architecture,
        "Os": config.os,
        "Size": image.size(),
        "RootFS": { "Type": "layers", "Layers": config.rootfs.diff_ids },
        "Manifest": {
            "Digest": image.descriptor.digest,
            "MediaType": image.descriptor.media_type,
            "Layers": image.manifest.layers,
        },
        "Store": store.layout_dir(),
    });
    if let Some(variant) = &config.variant {
        json["Variant"] = variant.clone().into();
    }
    json
}

/// `rmi`: remove the name (or, given an ID, every name of that image), then
/// every blob that no remaining name reaches.
pub fn remove_image(store: &Store, name: &str, force: bool) -> Result<()> {
    let image = match store.get(name) {
        Ok(image) => image,
        Err(e) => return remove_damaged_image(store, name, e),
    };
    let named_exactly = Reference::parse(name).is_ok_and(|r| r.store_name() == image.name);
    let names: Vec<Image> = if named_exactly {
        vec![image.clone()]
    } else {
        store
            .images()?
            .into_iter()
            .filter(|i| i.id() == image.id())
            .collect()
    };
    if names.len() > 1 && !force {
        return Err(Error::new(format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            image.id().short()
        )));
    }
    for named in &names {
        store.remove_ref(&named.name)?;
        let untagged = named
            .reference()
            .map(|r| r.familiar())
            .unwrap_or(named.name.clone());
        println!("Untagged: {untagged}");
    }
    let deleted = store.garbage_collect()?;
    if deleted.contains(image.id()) {
        println!("Deleted: {}", image.id());
    }
    Ok(())
}

/// `rmi` of a name whose image cannot be read (its manifest or config is
/// damaged): the name still goes, and garbage collection takes what only
/// it reached. Without this, a damaged image could never be removed.
fn remove_damaged_image(store: &Store, name: &str, why: Error) -> Result<()> {
    let stored = Reference::parse(name).map_or(name.to_string(), |r| r.store_name());
    if store.remove_ref(&stored)?.is_none() {
        return Err(why);
    }
    println!("Untagged: {name}");
    store.garbage_collect()?;
    Ok(())
}

fn login(
    globals: &GlobalArgs,
    server: Option<String>,
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
) -> Result<()> {
    let server = server.unwrap_or_else(|| DOCKER_HUB.to_string());
    let username = username.ok_or_else(|| Error::new("login needs --username (-u)"))?;
    let password = match (password, password_stdin) {
        (Some(p), false) => p,
        (None, true) => {
            let mut p = String::new();
            std::io::stdin()
                .read_to_string(&mut p)
                .map_err(|e| Error::new(format!("reading the password from stdin: {e}")))?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        (Some(_), true) => {
            return Err(Error::new(
                "--password and --password-stdin are mutually exclusive",
            ))
        }
        (None, false) => {
            return Err(Error::new(
                "login needs --password (-p) or --password-stdin",
            ))
        }
    };
    let credentials = Credentials { username, password };
    // Check the credentials against the registry before keeping them.
    let options = globals.registry_options();
    let host = if server == DOCKER_HUB {
        crate::reference::DOCKER_HUB_API_HOST
    } else {
        server.as_str()
    };
    let scheme = if options.is_insecure(host) {
        "http"
    } else {
        "https"
    };
    let registry = Registry::new(format!("{scheme}://{host}"), &server, "")?
        .with_credentials(Some(credentials.clone()));
    registry
        .ping()
        .map_err(|e| Error::new(format!("login to {server} failed: {}", e.message())))?;
    // A registry may accept the ping anonymously; a token or basic check
    // with the credentials proves them.
    verify_login(&registry, &server)?;
    auth::store_credentials(&server, Some(&credentials))?;
    println!("Login Succeeded");
    Ok(())
}

/// A second `/v2/` request, now carrying the answered challenge: it must
/// succeed for the credentials to be right.
fn verify_login(registry: &Registry, server: &str) -> Result<()> {
    let url = format!("{}/v2/", registry.base_url());
    let response = registry.get(&url, None)?;
    match response.status().as_u16() {
        200..=299 => Ok(()),
        401 | 403 => Err(Error::new(format!(
            "login to {server} failed: username or password refused"
        ))),
        status => Err(Error::new(format!(
            "login to {server} failed: HTTP {status}"
        ))),
    }
}

/// Parses the command line; usage errors exit 125 as docker's do, `--help`
/// and `--version` exit 0.
pub fn parse_args<P: clap::Parser>() -> P {
    match P::try_parse() {
        Ok(parsed) => parsed,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            let _ = e.print();
            std::process::exit(crate::error::ENGINE_FAILURE);
        }
    }
}

/// Exits with a command's exit code: errors become one line on stderr
/// (`pull: …`) and their own exit code.
pub fn exit_with(command: &str, result: Result<i32>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("{command}: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
