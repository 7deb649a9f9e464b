//! iptables: the way out (MASQUERADE), the way in (DNAT of published
//! ports), forwarding, and isolation between networks, the way docker
//! does it.
//!
//! The kernel's packet filter (netfilter) runs every packet through
//! *chains* of rules, grouped in *tables*. Two tables matter here:
//!
//! * `nat`: rewriting addresses. `PREROUTING` (a packet just arrived),
//!   `OUTPUT` (a packet made by a local process) and `POSTROUTING` (a
//!   packet about to leave);
//! * `filter`: deciding. `FORWARD` sees every packet the host routes from
//!   one interface to another, e.g. from a container out to the world.
//!
//! Like docker (`DOCKER`, `DOCKER-ISOLATION-STAGE-1`…), we put our rules in
//! **chains of our own**, reached by one jump each from the kernel's
//! chains, so they never mix with the host's own firewall and each can be
//! listed on its own (`iptables -t nat -S CRABBOX`):
//!
//! ```text
//! nat     PREROUTING  -m addrtype --dst-type LOCAL -j CRABBOX     DNAT of published ports,
//! nat     OUTPUT      -m addrtype --dst-type LOCAL -j CRABBOX     from outside and from the host
//! nat     POSTROUTING -j CRABBOX-POSTROUTING                      MASQUERADE
//! filter  FORWARD     -j CRABBOX-FORWARD (first)                  accept containers' traffic
//! filter  CRABBOX-FORWARD -j CRABBOX-ISOLATION-1 (first)          …after isolation
//! ```
//!
//! `CRABBOX-FORWARD` is inserted at the *top* of `FORWARD`: a host whose
//! `FORWARD` policy is DROP (docker sets that; ufw too) would otherwise
//! never let a packet reach our rules.
//!
//! **Per network** (bridge `BR`, subnet `S`):
//!
//! ```text
//! nat    CRABBOX-POSTROUTING -s S ! -o BR -j MASQUERADE           out to the world, as the host
//! nat    CRABBOX-POSTROUTING -s 127.0.0.0/8 -o BR -j MASQUERADE   replies to 127.0.0.1 clients
//! filter CRABBOX-FORWARD -i BR -o BR -j ACCEPT                    container ⇄ container
//! filter CRABBOX-FORWARD -i BR ! -o BR -j ACCEPT                  container → world
//! filter CRABBOX-FORWARD -o BR -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT   … and back
//! ```
//!
//! The bridge itself forwards frames between its ports, but with the
//! `br_netfilter` module loaded (docker loads it) even those pass through
//! `FORWARD`: hence the `-i BR -o BR` rule.
//!
//! **Isolation**: containers of two different networks must not reach each
//! other. We copy docker's two stages, because each network then owns
//! exactly its own rules, added and removed without touching any other's:
//!
//! ```text
//! CRABBOX-ISOLATION-1 -i BR ! -o BR -j CRABBOX-ISOLATION-2   leaving BR for elsewhere? look closer
//! CRABBOX-ISOLATION-2 -o BR -j DROP                          elsewhere is another network's bridge
//! ```
//!
//! A packet from `BR1` to `BR2` matches `BR1`'s stage-1 rule, and in stage
//! 2, `BR2`'s drop. A packet from `BR1` to the world matches no stage-2
//! rule and comes back to continue (an empty chain returns). A packet
//! within `BR1` never enters stage 2. An **internal** network (no way
//! out) gets no MASQUERADE and no accept to the world, and two stage-1
//! drops of its own: `-i BR ! -o BR -j DROP` (nothing leaves it) and
//! `! -i BR -o BR -j DROP` (nothing enters it from elsewhere).
//!
//! **Per published port** (`-p [HOSTIP:]HP:CP/PROTO` for a container `IP`):
//!
//! ```text
//! nat    CRABBOX [-d HOSTIP/32] -p PROTO -m PROTO --dport HP -j DNAT --to-destination IP:CP
//! nat    CRABBOX-POSTROUTING -s IP/32 -d IP/32 -p PROTO -m PROTO --dport CP -j MASQUERADE
//! filter CRABBOX-FORWARD -d IP/32 -o BR -p PROTO -m PROTO --dport CP -j ACCEPT
//! ```
//!
//! The second rule is for *hairpin* traffic: a container calling its own
//! published port comes back to itself, and must see the answer come from
//! the host (the gateway), not from itself, or it would drop it. The third
//! lets the connection through a `FORWARD` policy of DROP.
//!
//! **How rules are changed.** Each `iptables` command is a process that
//! reads the whole table from the kernel and writes it back: about a
//! millisecond or two each. To stay quick, one change (a network, a port)
//! costs two processes, whatever its number of rules: `iptables-save`
//! once, to see which of the rules are there already (so adding twice
//! adds nothing, and removing removes exactly what is there, every copy),
//! then one `iptables-restore --noflush` with the missing `-A` (or the
//! present `-D`) lines, applied per table as one transaction. Our rules
//! are written the way `iptables-save` prints them (`-d 10.0.0.2/32`,
//! `-p tcp -m tcp`), so that comparing is comparing text. `--explain`
//! shows each change as the `iptables` command that does it alone.
//!
//! **Which iptables.** Debian 12's `iptables` drives the kernel's newer
//! nf_tables; `iptables-legacy` drives the old x_tables. Both can hold
//! rules at once and the kernel runs both, but our rules must live beside
//! the host's own, where `iptables -S` shows them. [`Iptables::detect`]
//! takes `iptables` unless the host's rules are in the legacy tables
//! only.

use crate::address::{check_interface_name, program};
use crate::network::Network;
use crate::subnet::Cidr;
use ch01_images::error::{Error, Result};
use ch01_images::explain;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// DNAT of published ports (nat table).
pub const CHAIN: &str = "CRABBOX";
/// MASQUERADE (nat table).
pub const POSTROUTING: &str = "CRABBOX-POSTROUTING";
/// Accepting containers' traffic (filter table).
pub const FORWARD: &str = "CRABBOX-FORWARD";
/// Isolation between networks, stage 1 and stage 2 (filter table).
pub const ISOLATION_1: &str = "CRABBOX-ISOLATION-1";
pub const ISOLATION_2: &str = "CRABBOX-ISOLATION-2";

/// The chains of the kernel, which always exist.
const BUILT_IN: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// Which `iptables` to run: `iptables` or `iptables-legacy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iptables {
    pub binary: &'static str,
}

/// One published port: where it is published, and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dnat {
    /// Only connections to this host address; `None`: to any.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    /// `tcp`, `udp` (or `sctp`).
    pub protocol: String,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
    /// The bridge of the container's network.
    pub bridge: String,
    /// That network's subnet: its containers calling this port through
    /// the host are answered through the host too (see `port_rules`).
    pub subnet: Cidr,
}

/// One rule, as `iptables-save` prints it: `-A CHAIN SPEC` in `table`.
struct Rule {
    table: &'static str,
    chain: String,
    spec: String,
    /// Insert at the top of the chain instead of appending.
    first: bool,
    /// For `--explain`.
    why: String,
}

impl Rule {
    fn new(table: &'static str, chain: &str, spec: String, why: impl Into<String>) -> Rule {
        Rule {
            table,
            chain: chain.to_string(),
            spec,
            first: false,
            why: why.into(),
        }
    }

    fn at_top(mut self) -> Rule {
        self.first = true;
        self
    }

    /// The line `iptables-save` prints for it.
    fn saved(&self) -> String {
        format!("-A {} {}", self.chain, self.spec)
    }

    /// The line that adds it, in `iptables-restore`'s input (and after
    /// `iptables` on the command line).
    fn adding(&self) -> String {
        if self.first {
            format!("-I {} 1 {}", self.chain, self.spec)
        } else {
            self.saved()
        }
    }

    fn removing(&self) -> String {
        format!("-D {} {}", self.chain, self.spec)
    }
}

/// What `iptables-save` printed, per table: its chains and its rules.
#[derive(Default)]
struct Saved {
    tables: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

impl Saved {
    fn parse(text: &str) -> Saved {
        let mut saved = Saved::default();
        let mut table = String::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('*') {
                table = name.trim().to_string();
                saved.tables.entry(table.clone()).or_default();
            } else if let Some(chain) = line.strip_prefix(':') {
                let name = chain.split_whitespace().next().unwrap_or_default();
                saved
                    .tables
                    .entry(table.clone())
                    .or_default()
                    .0
                    .push(name.to_string());
            } else if line.starts_with("-A ") {
                saved
                    .tables
                    .entry(table.clone())
                    .or_default()
                    .1
                    .push(line.to_string());
            }
        }
        saved
    }

    fn has_chain(&self, table: &str, chain: &str) -> bool {
        self.tables
            .get(table)
            .is_some_and(|(chains, _)| chains.iter().any(|c| c == chain))
    }

    /// How many copies of this rule there are.
    fn count(&self, rule: &Rule) -> usize {
        let line = rule.saved();
        self.tables
            .get(rule.table)
            .map_or(0, |(_, rules)| rules.iter().filter(|r| **r == line).count())
    }
}

/// Anything beyond the empty defaults (built-in chains with policy ACCEPT)?
fn has_rules(save: &str) -> bool {
    save.lines().any(|line| {
        if line.starts_with("-A ") {
            return true;
        }
        let Some(chain) = line.strip_prefix(':') else {
            return false;
        };
        let mut words = chain.split_whitespace();
        let name = words.next().unwrap_or_default();
        let policy = words.next().unwrap_or_default();
        !BUILT_IN.contains(&name) || policy != "ACCEPT"
    })
}

// ANCHOR: detect
impl Iptables {
    /// Chooses `iptables`, unless the host's rules are all in the legacy
    /// tables (`iptables-legacy-save` shows some, `iptables-save` none):
    /// then `iptables-legacy`, so that ours sit beside them.
    pub fn detect() -> Result<Iptables> {
        program("iptables", "iptables")?;
        let nft = Iptables { binary: "iptables" };
        // The legacy tables in use in this (the calling thread's) network
        // namespace; none: no need to ask further.
        let legacy_tables =
            std::fs::read_to_string("/proc/thread-self/net/ip_tables_names").unwrap_or_default();
        if legacy_tables.trim().is_empty() || program("iptables-legacy", "iptables").is_err() {
            explain::step(
                "use `iptables` (there are no rules in the legacy tables)",
                None,
            );
            return Ok(nft);
        }
        let legacy = Iptables {
            binary: "iptables-legacy",
        };
        if !has_rules(&legacy.save_text()?) {
            explain::step("use `iptables` (the legacy tables hold no rules)", None);
            return Ok(nft);
        }
        if has_rules(&nft.save_text()?) {
            explain::step(
                "use `iptables` (the host has rules both there and in the legacy tables)",
                None,
            );
            return Ok(nft);
        }
        explain::step(
            "use `iptables-legacy`: the host's firewall rules are in the legacy tables (iptables-legacy-save), none in nf_tables (iptables-save)",
            None,
        );
        Ok(legacy)
    }
    // ANCHOR_END: detect

    // ANCHOR: ensure_chains
    /// Creates our chains and the jumps to them, those not there yet.
    pub fn ensure_chains(&self) -> Result<()> {
        let chains = [
            ("nat", CHAIN, "DNAT of published ports"),
            ("nat", POSTROUTING, "MASQUERADE of containers' traffic"),
            ("filter", FORWARD, "what containers may forward"),
            ("filter", ISOLATION_1, "isolation between networks, stage 1"),
            ("filter", ISOLATION_2, "isolation between networks, stage 2"),
        ];
        let local = "-m addrtype --dst-type LOCAL";
        let jumps = [
            Rule::new(
                "nat",
                "PREROUTING",
                format!("{local} -j {CHAIN}"),
                "send packets that arrive for a host address through the published ports",
            ),
            Rule::new(
                "nat",
                "OUTPUT",
                format!("{local} -j {CHAIN}"),
                "…and packets the host itself sends to one of its addresses (127.0.0.1 too)",
            ),
            Rule::new(
                "nat",
                "POSTROUTING",
                format!("-j {POSTROUTING}"),
                "send leaving packets through our MASQUERADE rules",
            ),
            Rule::new(
                "filter",
                "FORWARD",
                format!("-j {FORWARD}"),
                "forwarded packets meet our rules first, whatever the FORWARD policy",
            )
            .at_top(),
            Rule::new(
                "filter",
                FORWARD,
                format!("-j {ISOLATION_1}"),
                "isolation between networks comes before any accept",
            )
            .at_top(),
        ];
        let saved = self.save()?;
        let new_chains: Vec<(&str, &str, &str)> = chains
            .into_iter()
            .filter(|(table, chain, _)| !saved.has_chain(table, chain))
            .collect();
        let missing: Vec<&Rule> = jumps.iter().filter(|r| saved.count(r) == 0).collect();
        self.restore(&new_chains, &missing, Change::Add)
    }
    // ANCHOR_END: ensure_chains

    // ANCHOR: network_rules
    /// The rules of one network (see the module's doc).
    fn network_rules(network: &Network) -> Result<Vec<Rule>> {
        let br = network.bridge.as_str();
        check_interface_name(br)?;
        let subnet = subnet_text(network);
        let mut rules = Vec::new();
        if network.internal {
            rules.push(Rule::new(
                "filter",
                ISOLATION_1,
                format!("-i {br} ! -o {br} -j DROP"),
                format!("{} is internal: nothing leaves {br}…", network.name),
            ));
            rules.push(Rule::new(
                "filter",
                ISOLATION_1,
                format!("! -i {br} -o {br} -j DROP"),
                format!("…and nothing enters {br} from elsewhere"),
            ));
        } else {
            rules.push(Rule::new(
                "nat",
                POSTROUTING,
                format!("-s {subnet} ! -o {br} -j MASQUERADE"),
                format!(
                    "containers of {} go out with the host's address",
                    network.name
                ),
            ));
            rules.push(Rule::new(
                "nat",
                POSTROUTING,
                format!("-s 127.0.0.0/8 -o {br} -j MASQUERADE"),
                format!("connections from 127.0.0.1 into {br} come from the gateway instead"),
            ));
            rules.push(Rule::new(
                "filter",
                ISOLATION_1,
                format!("-i {br} ! -o {br} -j {ISOLATION_2}"),
                format!("a packet leaving {br} for elsewhere: check where it goes…"),
            ));
            rules.push(Rule::new(
                "filter",
                ISOLATION_2,
                format!("-o {br} -j DROP"),
                format!("…and no other network's packet may enter {br}"),
            ));
        }
        rules.push(Rule::new(
            "filter",
            FORWARD,
            format!("-i {br} -o {br} -j ACCEPT"),
            format!("containers of {} reach each other", network.name),
        ));
        if !network.internal {
            rules.push(Rule::new(
                "filter",
                FORWARD,
                format!("-i {br} ! -o {br} -j ACCEPT"),
                format!("containers of {} reach the world…", network.name),
            ));
            rules.push(Rule::new(
                "filter",
                FORWARD,
                format!("-o {br} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
                "…and the answers come back",
            ));
        }
        Ok(rules)
    }
    // ANCHOR_END: network_rules

    /// Adds a network's rules (those not there yet).
    pub fn add_network(&self, network: &Network) -> Result<()> {
        self.add(&Self::network_rules(network)?)
    }

    /// Removes a network's rules (those still there).
    pub fn remove_network(&self, network: &Network) -> Result<()> {
        self.remove(&Self::network_rules(network)?)
    }

    // ANCHOR: port_rules
    /// The rules of one published port (see the module's doc).
    fn port_rules(d: &Dnat) -> Result<Vec<Rule>> {
        check_interface_name(&d.bridge)?;
        let proto = d.protocol.as_str();
        if !matches!(proto, "tcp" | "udp" | "sctp") {
            return Err(Error::new(format!(
                "invalid protocol {proto:?} for a published port: use tcp, udp or sctp"
            )));
        }
        if d.host_port == 0 || d.container_port == 0 {
            return Err(Error::new("a published port cannot be 0"));
        }
        let (ip, cp, hp, br) = (d.container_ip, d.container_port, d.host_port, &d.bridge);
        let subnet = d.subnet;
        let host = match d.host_ip.filter(|a| !a.is_unspecified()) {
            Some(address) => format!("-d {address}/32 "),
            None => String::new(),
        };
        let on = d
            .host_ip
            .map_or("any host address".to_string(), |a| a.to_string());
        Ok(vec![
            Rule::new(
                "nat",
                CHAIN,
                format!("{host}-p {proto} -m {proto} --dport {hp} -j DNAT --to-destination {ip}:{cp}"),
                format!("publish: {proto} port {hp} on {on} goes to {ip}:{cp}"),
            ),
            Rule::new(
                "nat",
                POSTROUTING,
                format!("-s {subnet} -d {ip}/32 -p {proto} -m {proto} --dport {cp} -j MASQUERADE"),
                format!("hairpin: when {ip} or a neighbour on its bridge calls the published port, the answer goes back through the gateway (without br_netfilter, a reply switched straight to the caller would miss the NAT)"),
            ),
            Rule::new(
                "filter",
                FORWARD,
                format!("-d {ip}/32 -o {br} -p {proto} -m {proto} --dport {cp} -j ACCEPT"),
                format!("let connections to {ip}:{cp} through"),
            ),
        ])
    }
    // ANCHOR_END: port_rules

    /// Publishes a port: adds its rules (those not there yet).
    pub fn add_port(&self, d: &Dnat) -> Result<()> {
        self.add(&Self::port_rules(d)?)
    }

    /// Unpublishes a port: removes its rules (those still there).
    pub fn remove_port(&self, d: &Dnat) -> Result<()> {
        self.remove(&Self::port_rules(d)?)
    }

    /// Our chains and rules, as `iptables-save` prints them (without its
    /// timestamped comments): for `--explain` and tests.
    pub fn rules(&self) -> Result<String> {
        let text = self.save_text()?;
        let ours = |line: &str| {
            line.split_whitespace()
                .any(|word| word.trim_start_matches(':').starts_with(CHAIN))
        };
        let mut out = String::new();
        let mut table: Option<&str> = None;
        let mut section = String::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('*') {
                table = Some(name);
                section.clear();
            } else if line == "COMMIT" {
                if let (Some(name), false) = (table, section.is_empty()) {
                    out.push_str(&format!("*{name}\n{section}COMMIT\n"));
                }
                table = None;
            } else if (line.starts_with(':') || line.starts_with("-A ")) && ours(line) {
                section.push_str(line);
                section.push('\n');
            }
        }
        Ok(out)
    }

    fn add(&self, rules: &[Rule]) -> Result<()> {
        let saved = self.save()?;
        let missing: Vec<&Rule> = rules.iter().filter(|r| saved.count(r) == 0).collect();
        let result = self.restore(&[], &missing, Change::Add);
        if result.is_err() {
            // One table may have been changed and not the other: take
            // back what was added (these rules were not there before).
            let _ = self
                .save()
                .and_then(|now| self.restore(&[], &present(&now, &missing), Change::Remove));
        }
        result
    }

    fn remove(&self, rules: &[Rule]) -> Result<()> {
        let saved = self.save()?;
        let refs: Vec<&Rule> = rules.iter().collect();
        self.restore(&[], &present(&saved, &refs), Change::Remove)
    }

    fn save(&self) -> Result<Saved> {
        Ok(Saved::parse(&self.save_text()?))
    }

    /// `iptables-save`'s output.
    fn save_text(&self) -> Result<String> {
        let binary = format!("{}-save", self.binary);
        let path = program(&binary, "iptables")?;
        let output = Command::new(&path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::new(format!("run {binary}: {e}")))?;
        if !output.status.success() {
            let said = one_line(&String::from_utf8_lossy(&output.stderr));
            return Err(Error::new(format!("{binary}: {said}{}", hint(&said))));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Creates `chains` and adds (or removes) `rules` with one
    /// `iptables-restore --noflush`, narrating each change.
    fn restore(
        &self,
        chains: &[(&str, &str, &str)],
        rules: &[&Rule],
        change: Change,
    ) -> Result<()> {
        if chains.is_empty() && rules.is_empty() {
            return Ok(());
        }
        let mut input = String::new();
        // The line of the input each line of it comes from, for errors.
        let mut lines: Vec<String> = Vec::new();
        for table in ["raw", "mangle", "nat", "filter"] {
            let table_chains: Vec<_> = chains.iter().filter(|(t, _, _)| *t == table).collect();
            let table_rules: Vec<_> = rules.iter().filter(|r| r.table == table).collect();
            if table_chains.is_empty() && table_rules.is_empty() {
                continue;
            }
            let mut push = |line: String| {
                input.push_str(&line);
                input.push('\n');
                lines.push(line);
            };
            push(format!("*{table}"));
            let t = if table == "filter" {
                String::new()
            } else {
                format!("-t {table} ")
            };
            for (_, chain, why) in table_chains {
                explain::step(
                    &format!("a chain of our own: {why}"),
                    Some(&format!("{} {t}-N {chain}", self.binary)),
                );
                push(format!(":{chain} - [0:0]"));
            }
            for rule in table_rules {
                let line = match change {
                    Change::Add => rule.adding(),
                    Change::Remove => rule.removing(),
                };
                let why = match change {
                    Change::Add => rule.why.clone(),
                    Change::Remove => format!("remove: {}", rule.why),
                };
                explain::step(&why, Some(&format!("{} {t}{line}", self.binary)));
                push(line);
            }
            push("COMMIT".to_string());
        }
        let binary = format!("{}-restore", self.binary);
        let path = program(&binary, "iptables")?;
        let mut child = Command::new(&path)
            .args(["-w", "--noflush"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::new(format!("run {binary}: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error means it stopped early; its stderr says why.
            let _ = stdin.write_all(input.as_bytes());
        }
        let output = child
            .wait_with_output()
            .map_err(|e| Error::new(format!("run {binary}: {e}")))?;
        if output.status.success() {
            return Ok(());
        }
        let said = one_line(&String::from_utf8_lossy(&output.stderr));
        let failed = failed_line(&said)
            .and_then(|n| lines.get(n.checked_sub(1)?))
            .map(|line| format!(" `{line}`"))
            .unwrap_or_default();
        Err(Error::new(format!(
            "{binary} --noflush{failed}: {said}{}",
            hint(&said)
        )))
    }
}

#[derive(Clone, Copy)]
enum Change {
    Add,
    Remove,
}

/// Each of `rules` once per copy of it in `saved`.
fn present<'a>(saved: &Saved, rules: &[&'a Rule]) -> Vec<&'a Rule> {
    rules
        .iter()
        .flat_map(|r| (0..saved.count(r)).map(move |_| *r))
        .collect()
}

/// `172.17.0.0/16`: the subnet's network address (whatever host bits the
/// stored address has) and prefix, as `iptables-save` prints it.
fn subnet_text(network: &Network) -> String {
    let prefix = network.subnet.prefix.min(32);
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    let address = Ipv4Addr::from(u32::from(network.subnet.addr) & mask);
    format!("{address}/{prefix}")
}

/// The line number in an iptables-restore complaint: `line 3 failed` or
/// `Error occurred at line: 3`.
fn failed_line(said: &str) -> Option<usize> {
    let (_, after) = said.split_once("line")?;
    let digits: String = after
        .trim_start_matches([':', ' '])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn one_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Try `") && !l.starts_with("# Warning"))
        .collect();
    lines.join("; ")
}

fn hint(said: &str) -> &'static str {
    if said.contains("Permission denied") || said.contains("must be root") {
        " — run as root (sudo)"
    } else if said.contains("No chain/target/match") || said.contains("Couldn't load") {
        " — this kernel may lack an iptables module (nat, conntrack, addrtype), or a chain was deleted by hand"
    } else if said.contains("xtables lock") || said.contains("Resource temporarily unavailable") {
        " — another program is changing the firewall; try again"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::tests::{in_new_netns, root_or_skip, test_network};
    use crate::subnet::Cidr;

    fn dnat(host_ip: Option<Ipv4Addr>, host_port: u16, protocol: &str) -> Dnat {
        Dnat {
            host_ip,
            host_port,
            protocol: protocol.into(),
            container_ip: Ipv4Addr::new(10, 98, 1, 2),
            container_port: 80,
            bridge: "cbnat1".into(),
            subnet: "10.98.1.0/24".parse().unwrap(),
        }
    }

    fn save_all(iptables: &Iptables) -> String {
        let text = iptables.save_text().unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// The backends present on this machine.
    fn backends() -> Vec<Iptables> {
        let mut found = vec![Iptables { binary: "iptables" }];
        if program("iptables-legacy", "iptables").is_ok() {
            found.push(Iptables {
                binary: "iptables-legacy",
            });
        }
        found
    }

    #[test]
    fn detect_takes_iptables_in_an_empty_namespace() {
        if !root_or_skip() {
            return;
        }
        in_new_netns(|| {
            assert_eq!(Iptables::detect().unwrap().binary, "iptables");
        });
    }

    #[test]
    fn has_rules_ignores_the_empty_defaults() {
        let empty =
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [3:120]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        assert!(!has_rules(empty));
        assert!(has_rules(
            &empty.replace(":FORWARD ACCEPT", ":FORWARD DROP")
        ));
        assert!(has_rules(&format!("{empty}:DOCKER - [0:0]\n")));
        assert!(has_rules(&format!("{empty}-A INPUT -j ACCEPT\n")));
    }

    #[test]
    fn failed_lines_are_found_in_both_dialects() {
        assert_eq!(
            failed_line("iptables-restore: line 7 failed: No chain"),
            Some(7)
        );
        assert_eq!(
            failed_line("Bad ctstate \"X\"; Error occurred at line: 2"),
            Some(2)
        );
        assert_eq!(failed_line("nothing"), None);
    }

    #[test]
    fn subnets_are_written_as_iptables_save_prints_them() {
        let mut net = test_network("cbnat1", 98, 1, false);
        net.subnet = Cidr {
            addr: Ipv4Addr::new(172, 18, 3, 7),
            prefix: 16,
        };
        assert_eq!(subnet_text(&net), "172.18.0.0/16");
    }

    #[test]
    fn chains_are_made_once_and_jumps_come_first() {
        if !root_or_skip() {
            return;
        }
        for iptables in backends() {
            in_new_netns(move || {
                // Someone else's rule at the top of FORWARD, and a DROP policy.
                let status = Command::new(iptables.binary)
                    .args(["-w", "-I", "FORWARD", "-j", "ACCEPT"])
                    .status()
                    .unwrap();
                assert!(status.success());
                iptables.ensure_chains().unwrap();
                let once = save_all(&iptables);
                iptables.ensure_chains().unwrap();
                assert_eq!(save_all(&iptables), once, "{}", iptables.binary);
                let rules = iptables.rules().unwrap();
                for line in [
                    ":CRABBOX - [0:0]",
                    ":CRABBOX-POSTROUTING - [0:0]",
                    ":CRABBOX-FORWARD - [0:0]",
                    ":CRABBOX-ISOLATION-1 - [0:0]",
                    ":CRABBOX-ISOLATION-2 - [0:0]",
                    "-A PREROUTING -m addrtype --dst-type LOCAL -j CRABBOX",
                    "-A OUTPUT -m addrtype --dst-type LOCAL -j CRABBOX",
                    "-A POSTROUTING -j CRABBOX-POSTROUTING",
                    "-A FORWARD -j CRABBOX-FORWARD",
                    "-A CRABBOX-FORWARD -j CRABBOX-ISOLATION-1",
                ] {
                    assert!(rules.lines().any(|l| l == line), "{line} in\n{rules}");
                }
                let forward: Vec<&str> = once
                    .lines()
                    .filter(|l| l.starts_with("-A FORWARD "))
                    .collect();
                assert_eq!(
                    forward,
                    ["-A FORWARD -j CRABBOX-FORWARD", "-A FORWARD -j ACCEPT"]
                );
            });
        }
    }

    #[test]
    fn network_rules_come_and_go_exactly() {
        if !root_or_skip() {
            return;
        }
        for iptables in backends() {
            in_new_netns(move || {
                iptables.ensure_chains().unwrap();
                let other = test_network("cbnat2", 98, 2, false);
                iptables.add_network(&other).unwrap();
                let before = save_all(&iptables);
                for net in [
                    test_network("cbnat1", 98, 1, false),
                    test_network("cbnat3", 98, 3, true),
                ] {
                    iptables.add_network(&net).unwrap();
                    let added = save_all(&iptables);
                    assert_ne!(added, before);
                    // Every rule is seen as there (written as iptables-save
                    // prints it): adding again adds nothing.
                    iptables.add_network(&net).unwrap();
                    assert_eq!(save_all(&iptables), added, "{}", iptables.binary);
                    for rule in Iptables::network_rules(&net).unwrap() {
                        assert!(added.lines().any(|l| l == rule.saved()), "{}", rule.saved());
                    }
                    iptables.remove_network(&net).unwrap();
                    assert_eq!(save_all(&iptables), before, "{}", iptables.binary);
                    iptables.remove_network(&net).unwrap();
                    assert_eq!(save_all(&iptables), before);
                }
            });
        }
    }

    #[test]
    fn port_rules_come_and_go_exactly() {
        if !root_or_skip() {
            return;
        }
        for iptables in backends() {
            in_new_netns(move || {
                iptables.ensure_chains().unwrap();
                iptables
                    .add_network(&test_network("cbnat1", 98, 1, false))
                    .unwrap();
                let before = iptables.rules().unwrap();
                for d in [
                    dnat(None, 8080, "tcp"),
                    dnat(Some(Ipv4Addr::LOCALHOST), 8081, "tcp"),
                    dnat(Some(Ipv4Addr::new(10, 0, 0, 1)), 5353, "udp"),
                ] {
                    iptables.add_port(&d).unwrap();
                    let added = iptables.rules().unwrap();
                    for rule in Iptables::port_rules(&d).unwrap() {
                        assert!(added.lines().any(|l| l == rule.saved()), "{}", rule.saved());
                    }
                    iptables.add_port(&d).unwrap();
                    assert_eq!(iptables.rules().unwrap(), added, "{}", iptables.binary);
                    iptables.remove_port(&d).unwrap();
                    assert_eq!(iptables.rules().unwrap(), before, "{}", iptables.binary);
                    iptables.remove_port(&d).unwrap();
                }
            });
        }
    }

    /// A web server in a container, reached through a published port from
    /// the host's 127.0.0.1, from the gateway address, and from the
    /// container itself (hairpin), with a FORWARD policy of DROP.
    #[test]
    fn a_published_port_is_reached_from_the_host_and_from_itself() {
        if !root_or_skip() {
            return;
        }
        in_new_netns(|| {
            use crate::address::tests::Sleeper;
            use crate::link;
            let net = test_network("cbnat6", 98, 6, false);
            crate::address::enable_forwarding().unwrap();
            link::ensure_bridge(&net).unwrap();
            crate::address::enable_route_localnet("cbnat6").unwrap();
            let iptables = Iptables::detect().unwrap();
            iptables.ensure_chains().unwrap();
            iptables.add_network(&net).unwrap();
            let status = Command::new(iptables.binary)
                .args(["-w", "-P", "FORWARD", "DROP"])
                .status()
                .unwrap();
            assert!(status.success());
            Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .unwrap();

            let container = Sleeper::start();
            container.run(&["ip", "link", "set", "lo", "up"]);
            let endpoint = crate::network::Endpoint {
                container: "web".into(),
                ip: Ipv4Addr::new(10, 98, 6, 2),
                mac: "02:42:0a:62:06:02".into(),
                aliases: vec![],
                interface: "eth0".into(),
                host_interface: link::host_interface_name("web", &net.id),
            };
            link::attach(container.pid(), &net, &endpoint, true).unwrap();
            let site = std::env::temp_dir().join(format!("crabbox-nat-{}", std::process::id()));
            std::fs::create_dir_all(&site).unwrap();
            std::fs::write(site.join("hello"), "hello from the container\n").unwrap();
            // Killed when dropped, also if an assertion fails.
            let _server = Sleeper(
                Command::new("nsenter")
                    .arg(format!("--net=/proc/{}/ns/net", container.pid()))
                    .args(["busybox", "httpd", "-f", "-p", "80", "-h"])
                    .arg(&site)
                    .spawn()
                    .unwrap(),
            );
            let d = Dnat {
                host_ip: None,
                host_port: 8080,
                protocol: "tcp".into(),
                container_ip: endpoint.ip,
                container_port: 80,
                bridge: "cbnat6".into(),
                subnet: net.subnet,
            };
            iptables.add_port(&d).unwrap();
            // busybox 1.35's `wget -T` crashes: `timeout` bounds it instead.
            let wget = |inside: bool, url: &str| {
                let mut command = Command::new("nsenter");
                if inside {
                    command.arg(format!("--net=/proc/{}/ns/net", container.pid()));
                }
                command.args([
                    "busybox", "timeout", "2", "busybox", "wget", "-q", "-O", "-", url,
                ]);
                command.output().unwrap()
            };
            let fetch = |inside: bool, url: &str| {
                // The server may need a moment to listen.
                let mut last = String::new();
                for _ in 0..50 {
                    let output = wget(inside, url);
                    if output.status.success() {
                        return String::from_utf8_lossy(&output.stdout).into_owned();
                    }
                    last = format!(
                        "{}: {}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr)
                    );
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                panic!("wget {url} (inside: {inside}): {last}");
            };
            let expected = "hello from the container\n";
            assert_eq!(fetch(false, "http://127.0.0.1:8080/hello"), expected);
            assert_eq!(fetch(false, "http://10.98.6.1:8080/hello"), expected);
            assert_eq!(fetch(true, "http://10.98.6.1:8080/hello"), expected);

            iptables.remove_port(&d).unwrap();
            let gone = wget(false, "http://127.0.0.1:8080/hello");
            assert!(!gone.status.success(), "still published after remove_port");
            let _ = std::fs::remove_dir_all(&site);
        });
    }

    #[test]
    fn bad_ports_are_refused_before_iptables_runs() {
        let mut d = dnat(None, 8080, "tcp\n-A INPUT -j ACCEPT");
        assert!(Iptables::port_rules(&d).is_err());
        d.protocol = "tcp".into();
        d.bridge = "br0 -j ACCEPT".into();
        assert!(Iptables::port_rules(&d).is_err());
    }
}
