//! The plugin at work: one request to the daemon per command, the IPAM plugin run as the CNI spec
//! runs plugins, and ADD, DEL, CHECK, STATUS and GC on top of the pure pieces next door.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::{
    code, expected, parse_conf, parse_result, render_result, ver, version_result, CniError, Env, IpamResult, NetConf,
    Result, SUPPORTED,
};
use crate::api::{CniAdd, CniCheck, CniIp, CniRoute};
use crate::client::{self, CallError, Client};

/// The daemon's client, with the CNI spec's error codes: not reaching the daemon is code 11 (try
/// again later: a runtime retries), a refusal carries the code the daemon chose.
fn daemon(conf: &NetConf) -> Daemon {
    Daemon(Client::new(&conf.socket))
}

struct Daemon(Client);

impl Daemon {
    fn call<T>(&self, f: impl FnOnce(&Client) -> client::Result<T>) -> Result<T> {
        f(&self.0).map_err(|e| {
            let code = match &e {
                CallError::NoDaemon { .. } => code::TRY_AGAIN_LATER,
                CallError::Io { .. } => code::IO,
                CallError::Decode(_) => code::DECODE,
                CallError::Version { .. } => code::INCOMPATIBLE_VERSION,
                CallError::Refused { code, .. } => code.unwrap_or(code::INTERNAL),
            };
            let msg = match e {
                CallError::NoDaemon { source, .. } => format!(
                    "the xmacvlan daemon is not running: cannot connect to {} ({source}); start it with `xmacvlan daemon`",
                    self.0.socket().display()
                ),
                e => e.to_string(),
            };
            CniError::new(code, msg)
        })
    }
}

/// Runs the IPAM plugin of `conf` for `command`, with the configuration on stdin, at the highest
/// spec version both it and the configuration speak. Returns its stdout (a result for ADD).
fn exec_ipam(conf: &NetConf, env: &Env, command: &str) -> Result<Value> {
    let plugin = conf.ipam_type().expect("callers check for an IPAM plugin");
    let bin = find_plugin(plugin, &env.path)?;
    let mut stdin = conf.raw.clone();
    let versions = plugin_versions(&bin);
    if !versions.contains(&conf.cni_version) {
        // An older IPAM plugin (Debian's host-local speaks up to 1.0.0) gets the newest version it
        // knows that is not newer than the configuration's.
        if let Some(v) = versions.iter().filter(|v| ver(v) <= ver(&conf.cni_version)).max_by_key(|v| ver(v)) {
            stdin["cniVersion"] = json!(v);
        }
    }
    let out = run_plugin(&bin, command, env, &stdin)?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let v: Value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
        let msg = v.get("msg").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| {
            format!("{} {}", text.trim(), String::from_utf8_lossy(&out.stderr).trim()).trim().to_string()
        });
        let mut e = CniError::new(
            v.get("code").and_then(Value::as_u64).map_or(code::INTERNAL, |c| c as u32),
            format!("IPAM plugin {plugin} {command}: {msg}"),
        );
        e.details = v.get("details").and_then(Value::as_str).unwrap_or_default().to_string();
        return Err(e);
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text.trim())
        .map_err(|e| CniError::new(code::DECODE, format!("IPAM plugin {plugin} {command}: output is not JSON: {e}")))
}

fn find_plugin(name: &str, cni_path: &str) -> Result<PathBuf> {
    if name.contains('/') {
        return Err(CniError::new(code::INVALID_CONFIG, format!("IPAM plugin type \"{name}\" must be a plain name")));
    }
    cni_path.split(':').filter(|d| !d.is_empty()).map(|d| Path::new(d).join(name)).find(|p| p.is_file()).ok_or_else(
        || CniError::new(code::INVALID_CONFIG, format!("failed to find plugin \"{name}\" in path [{cni_path}]")),
    )
}

fn run_plugin(bin: &Path, command: &str, env: &Env, stdin: &Value) -> Result<std::process::Output> {
    let mut child = Command::new(bin)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &env.container_id)
        .env("CNI_NETNS", &env.netns)
        .env("CNI_IFNAME", &env.ifname)
        .env("CNI_ARGS", &env.args)
        .env("CNI_PATH", &env.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CniError::new(code::IO, format!("running {}: {e}", bin.display())))?;
    let data = serde_json::to_vec(stdin).expect("a Value serializes");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(&data);
    }
    child.wait_with_output().map_err(|e| CniError::new(code::IO, format!("running {}: {e}", bin.display())))
}

/// The spec versions a plugin reports for VERSION (empty if it does not answer).
fn plugin_versions(bin: &Path) -> Vec<String> {
    let env = Env::default();
    run_plugin(bin, "VERSION", &env, &json!({ "cniVersion": "0.4.0" }))
        .ok()
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
        .and_then(|v| v.get("supportedVersions").cloned())
        .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
        .unwrap_or_default()
}

fn add(conf: &NetConf, env: &Env) -> Result<Value> {
    env.require(&["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])?;
    if conf.ipam.is_some() {
        env.require(&["CNI_PATH"])?;
    }
    let ipam = match conf.ipam_type() {
        None => IpamResult::default(),
        Some(_) => {
            let r = parse_result(&exec_ipam(conf, env, "ADD")?)?;
            if r.ips.is_empty() {
                let _ = exec_ipam(conf, env, "DEL");
                return Err(CniError::new(code::INTERNAL, "IPAM plugin returned missing IP config"));
            }
            r
        }
    };
    let req = CniAdd {
        network: conf.network(),
        attachment: env.attachment(),
        netns: env.netns.clone(),
        mtu: conf.mtu,
        mac: conf.wanted_mac(&env.args),
        ips: ipam.ips.clone(),
        routes: ipam.routes.iter().map(|r| with_gateway(r, &ipam.ips)).collect(),
    };
    match daemon(conf).call(|c| c.cni_add(req)) {
        Ok(v) => {
            let iface =
                json!({ "name": env.ifname, "mac": v.endpoint.mac, "sandbox": env.netns, "mtu": v.endpoint.mtu });
            Ok(render_result(&conf.cni_version, &iface, &ipam, conf.dns.as_ref()))
        }
        Err(e) => {
            if conf.ipam.is_some() {
                let _ = exec_ipam(conf, env, "DEL");
            }
            Err(e)
        }
    }
}

/// A route without a gateway goes via the gateway of the first address of its family, if any (as
/// the reference plugins configure routes).
fn with_gateway(r: &CniRoute, ips: &[CniIp]) -> CniRoute {
    let gw = r.gw.or_else(|| {
        ips.iter().filter(|ip| ip.address.addr().is_ipv4() == r.dst.addr().is_ipv4()).find_map(|ip| ip.gateway)
    });
    CniRoute { dst: r.dst, gw }
}

/// DEL: the IPAM plugin first, then the endpoint; an attachment that is already gone is success.
fn del(conf: &NetConf, env: &Env) -> Result<()> {
    env.require(&["CNI_CONTAINERID", "CNI_IFNAME"])?;
    if conf.ipam.is_some() {
        env.require(&["CNI_PATH"])?;
        exec_ipam(conf, env, "DEL")?;
    }
    match daemon(conf).call(|c| c.cni_del(conf.name.clone(), env.attachment())) {
        Ok(_) => Ok(()),
        // No daemon: its state still lists the attachment, and a daemon that starts drops
        // endpoints whose namespace is gone. With the namespace still there, the runtime must
        // come back.
        Err(e) if e.code == code::TRY_AGAIN_LATER && (env.netns.is_empty() || !Path::new(&env.netns).exists()) => {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn check(conf: &NetConf, env: &Env) -> Result<()> {
    if ver(&conf.cni_version) < (0, 4, 0) {
        return Err(CniError::new(code::INCOMPATIBLE_VERSION, "config version does not allow CHECK"));
    }
    env.require(&["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])?;
    if conf.ipam.is_some() {
        env.require(&["CNI_PATH"])?;
        exec_ipam(conf, env, "CHECK")?;
    }
    let prev =
        conf.prev_result.as_ref().ok_or_else(|| CniError::new(code::INVALID_CONFIG, "required prevResult missing"))?;
    let (mac, r) = expected(prev, &env.ifname, &env.netns)?;
    let req = CniCheck {
        network: conf.network(),
        attachment: env.attachment(),
        netns: env.netns.clone(),
        mac,
        ips: r.ips,
        routes: r.routes,
    };
    daemon(conf).call(|c| c.cni_check(req)).map(|_| ())
}

fn status(conf: &NetConf, env: &Env) -> Result<()> {
    if ver(&conf.cni_version) < (1, 1, 0) {
        return Err(CniError::new(code::INCOMPATIBLE_VERSION, "config version does not allow STATUS"));
    }
    daemon(conf).call(|c| c.cni_status(conf.name.clone(), conf.master.clone())).map_err(|e| match e.code {
        code::TRY_AGAIN_LATER => CniError::new(code::NOT_AVAILABLE, e.msg),
        _ => e,
    })?;
    ipam_if_it_speaks_1_1(conf, env, "STATUS")
}

fn gc(conf: &NetConf, env: &Env) -> Result<()> {
    if ver(&conf.cni_version) < (1, 1, 0) {
        return Err(CniError::new(code::INCOMPATIBLE_VERSION, "config version does not allow GC"));
    }
    daemon(conf).call(|c| c.cni_gc(conf.name.clone(), conf.valid.clone()))?;
    ipam_if_it_speaks_1_1(conf, env, "GC")
}

/// STATUS and GC exist from 1.1.0: an IPAM plugin that does not speak it is not asked.
fn ipam_if_it_speaks_1_1(conf: &NetConf, env: &Env, command: &str) -> Result<()> {
    let Some(plugin) = conf.ipam_type() else { return Ok(()) };
    env.require(&["CNI_PATH"])?;
    let bin = find_plugin(plugin, &env.path)?;
    if plugin_versions(&bin).iter().any(|v| ver(v) >= (1, 1, 0)) {
        exec_ipam(conf, env, command)?;
    }
    Ok(())
}

/// One plugin invocation: stdout's JSON (None = nothing to print) or an error to print.
pub fn dispatch(env: &Env, stdin: &[u8]) -> std::result::Result<Option<Value>, (CniError, String)> {
    let latest = SUPPORTED[SUPPORTED.len() - 1].to_string();
    if env.command == "VERSION" {
        return Ok(Some(version_result(stdin)));
    }
    let conf = parse_conf(stdin).map_err(|e| (e, latest.clone()))?;
    let v = conf.cni_version.clone();
    let r = match env.command.as_str() {
        "ADD" => add(&conf, env).map(Some),
        "DEL" => del(&conf, env).map(|()| None),
        "CHECK" => check(&conf, env).map(|()| None),
        "STATUS" => status(&conf, env).map(|()| None),
        "GC" => gc(&conf, env).map(|()| None),
        "" => Err(CniError::new(code::MISSING_ENV, "required env variables [CNI_COMMAND] missing")),
        other => Err(CniError::new(code::MISSING_ENV, format!("unknown CNI_COMMAND: {other}"))),
    };
    r.map_err(|e| (e, v))
}

/// The plugin's entry point; returns the exit code.
pub fn main() -> i32 {
    let env = Env::from_process();
    let mut stdin = Vec::new();
    if env.command != "VERSION" {
        if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
            let e = CniError::new(code::IO, format!("reading the network configuration from stdin: {e}"));
            println!("{}", e.to_json(SUPPORTED[SUPPORTED.len() - 1]));
            return 1;
        }
    } else {
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    match dispatch(&env, &stdin) {
        Ok(Some(v)) => {
            println!("{v}");
            0
        }
        Ok(None) => 0,
        Err((e, version)) => {
            println!("{}", e.to_json(&version));
            1
        }
    }
}
