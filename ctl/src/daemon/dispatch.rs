//! A request to the registry: which of the daemon's methods serves it, what it saves and in which
//! order (a removing command saves what it will leave before it acts; a making one acts, saves,
//! and undoes itself when it cannot), what it records of the links it makes or removes, and what
//! it posts for the readers, who never wait for it (`board`).

use anyhow::{Context, Result};
use serde_json::Value;

use super::board::Board;
use super::{Daemon, Owner};
use crate::api::Request;

/// The network a request may change (the one it names), None for the readers' requests.
pub(super) fn changes(req: &Request) -> Option<&str> {
    match req {
        Request::NetworkLs | Request::NetworkInspect { .. } | Request::Stats => None,
        Request::NetworkCreate(c) => Some(&c.name),
        Request::NetworkRm { name, .. } => Some(name),
        Request::Connect(c) => Some(&c.network),
        Request::Disconnect { network, .. }
        | Request::Macaddr { network, .. }
        | Request::CniDel { network, .. }
        | Request::CniStatus { network, .. }
        | Request::CniGc { network, .. } => Some(network),
        Request::CniAdd(a) => Some(&a.network.name),
        Request::CniCheck(c) => Some(&c.network.name),
    }
}

/// A reader's request answered from the board (None for any other request): it never waits for
/// the registry.
pub(super) fn read(board: &Board, req: &Request) -> Option<Result<Value>> {
    Some(match req {
        Request::NetworkLs => to_data(board.ls()),
        Request::NetworkInspect { name } => board.inspect(name).and_then(to_data),
        Request::Stats => to_data(board.stats()),
        _ => return None,
    })
}

/// A typed reply as the `data` of the reply line.
pub(super) fn to_data(reply: impl serde::Serialize) -> Result<Value> {
    Ok(serde_json::to_value(reply)?)
}

impl Daemon {
    pub(super) async fn handle(&mut self, req: Request) -> Result<Value> {
        let links = matches!(
            req,
            Request::NetworkCreate(_)
                | Request::Connect(_)
                | Request::CniAdd(_)
                | Request::Disconnect { .. }
                | Request::NetworkRm { .. }
                | Request::CniDel { .. }
                | Request::CniGc { .. }
        );
        let network = changes(&req).map(str::to_string);
        let reply = self.dispatch(req).await;
        if links {
            // Saved, or undone: the links it was about to make or remove are accounted for.
            self.intents.clear();
        }
        // Done or undone: the readers see it before the client hears of it.
        if let Some(name) = network {
            self.post(&name);
        }
        reply
    }

    async fn dispatch(&mut self, req: Request) -> Result<Value> {
        match req {
            Request::NetworkCreate(c) => {
                let name = c.name.clone();
                let v = self.create(c).await?;
                if let Err(e) = self.persist() {
                    let _ = self.remove(&name, true).await;
                    return Err(e.context(format!("network '{name}' was not created")));
                }
                to_data(v)
            }
            Request::NetworkRm { name, force } => to_data(self.remove_saved(&name, force, "network rm").await?),
            Request::NetworkLs | Request::NetworkInspect { .. } | Request::Stats => {
                read(&self.board, &req).expect("a reader's request")
            }
            Request::Connect(c) => {
                let (network, key) = (c.network.clone(), c.tap.clone().or(c.netns.clone()).unwrap_or_default());
                let v = self.connect(c, None).await?;
                if let Err(e) = self.persist() {
                    let _ = self.disconnect(&network, &key).await;
                    return Err(e.context("the endpoint was not connected"));
                }
                to_data(v)
            }
            Request::Disconnect { network, endpoint } => {
                let id = self.net(&network)?.find_endpoint(&endpoint)?;
                to_data(self.disconnect_saved(&network, id, "network disconnect").await?)
            }
            Request::Macaddr { network, endpoint, action, macs } => {
                let v = self.macaddr(&network, &endpoint, action, &macs).await?;
                self.persist_after("network macaddr");
                to_data(v)
            }
            Request::CniAdd(a) => {
                let (network, att) = (a.network.name.clone(), a.attachment.clone());
                let v = self.cni_add(a).await?;
                if let Err(e) = self.persist() {
                    let _ = self.cni_del(&network, &att).await;
                    return Err(e.context("the attachment was not made"));
                }
                to_data(v)
            }
            Request::CniDel { network, attachment } => {
                self.save_cni_removal(&network, |a| a.as_ref() != Some(&attachment))
                    .context("the attachment was not removed")?;
                let v = self.cni_del(&network, &attachment).await?;
                self.persist_after("CNI DEL");
                to_data(v)
            }
            Request::CniCheck(c) => to_data(self.cni_check(c).await?),
            Request::CniStatus { network, master } => to_data(self.cni_status(&network, master.as_deref()).await?),
            Request::CniGc { network, valid } => {
                if self.nets.get(&network).is_some_and(|n| n.owner == Owner::Cni) {
                    self.save_cni_removal(&network, |a| a.as_ref().is_some_and(|a| valid.contains(a)))
                        .context("no attachment was collected")?;
                }
                let v = self.cni_gc(&network, &valid).await?;
                self.persist_after("CNI GC");
                to_data(v)
            }
        }
    }
}
