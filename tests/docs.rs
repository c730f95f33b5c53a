//! The deployment files in docs/ are read by machines: every YAML document parses and has the
//! kind it claims, every CNI configuration (conflists, the NetworkAttachmentDefinition's embedded
//! JSON, the JSON examples in docs/cni.md) passes the plugin's own configuration parser, and the
//! DaemonSet runs the daemon and installs the plugin the way the README says. No root needed.

use std::path::{Path, PathBuf};

use serde_json::Value;
use xmacvlan_ctl::cni::parse_conf;

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

fn yaml_docs(path: &Path) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every plugin entry of type xmacvlan-cni in a conflist or a single configuration, with the
/// list's cniVersion and name, checked by the plugin's parser.
fn check_cni_config(what: &str, conf: &Value) -> usize {
    let entries: Vec<Value> = match conf.get("plugins").and_then(Value::as_array) {
        Some(plugins) => plugins
            .iter()
            .map(|p| {
                let mut p = p.clone();
                p["cniVersion"] = conf["cniVersion"].clone();
                p["name"] = conf["name"].clone();
                p
            })
            .collect(),
        None => vec![conf.clone()],
    };
    let ours: Vec<&Value> = entries.iter().filter(|p| p["type"] == "xmacvlan-cni").collect();
    for p in &ours {
        parse_conf(&serde_json::to_vec(p).unwrap())
            .unwrap_or_else(|e| panic!("{what}: the plugin refuses its own example: {} ({p})", e.msg));
    }
    ours.len()
}

#[test]
fn kubernetes_manifests_parse_and_carry_a_valid_plugin_config() {
    let ds = yaml_docs(&docs().join("k8s/xmacvlan-daemonset.yaml"));
    let kinds: Vec<&str> = ds.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(kinds.contains(&"DaemonSet"), "a DaemonSet: {kinds:?}");
    let set = ds.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true), "the daemon runs in the node's network namespace");
    let text = serde_yaml::to_string(pod).unwrap();
    assert!(text.contains("xmacvlan-cni"), "the plugin binary is installed on the node");
    let daemon = pod["containers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| serde_yaml::to_string(c).unwrap().contains("daemon"))
        .expect("a container that runs `xmacvlan daemon`");
    let argv: Vec<String> = daemon["command"]
        .as_sequence()
        .into_iter()
        .chain(daemon["args"].as_sequence())
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    assert!(argv.iter().any(|a| a == "daemon"), "runs `xmacvlan daemon`: {argv:?}");
    // The daemon's own CLI accepts those flags.
    let bin = env!("CARGO_BIN_EXE_xmacvlan");
    let flags: Vec<&str> = argv.iter().skip_while(|a| *a != "daemon").map(String::as_str).collect();
    let out = std::process::Command::new(bin).args(&flags).arg("--help").output().unwrap();
    assert!(out.status.success(), "xmacvlan {flags:?}: {}", String::from_utf8_lossy(&out.stderr));

    let nad = yaml_docs(&docs().join("k8s/network-attachment-definition.yaml"));
    let def = nad.iter().find(|d| d["kind"] == "NetworkAttachmentDefinition").expect("a NetworkAttachmentDefinition");
    assert_eq!(def["apiVersion"].as_str(), Some("k8s.cni.cncf.io/v1"));
    let config: Value = serde_json::from_str(def["spec"]["config"].as_str().expect("spec.config is a string"))
        .expect("spec.config is JSON");
    assert_eq!(check_cni_config("NetworkAttachmentDefinition", &config), 1);
    let name = def["metadata"]["name"].as_str().unwrap();
    let user = nad.iter().find(|d| d["kind"] == "Pod").expect("a pod that uses it");
    let wants = user["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"].as_str().unwrap_or_default();
    assert!(wants.contains(name), "the pod asks for {name}: {wants}");
}

#[test]
fn example_configurations_are_accepted_by_the_plugin() {
    let mut n = 0;
    for e in std::fs::read_dir(docs().join("cni-examples")).unwrap() {
        let path = e.unwrap().path();
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += check_cni_config(&path.display().to_string(), &v);
    }
    assert!(n >= 2, "the examples configure xmacvlan-cni");
    // The JSON blocks of docs/cni.md.
    let md = std::fs::read_to_string(docs().join("cni.md")).unwrap();
    let mut blocks = 0;
    for block in md.split("```json").skip(1) {
        let body = block.split("```").next().unwrap();
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("docs/cni.md JSON block: {e}\n{body}"));
        check_cni_config("docs/cni.md", &v);
        blocks += 1;
    }
    assert!(blocks >= 1, "docs/cni.md shows a configuration");
}
