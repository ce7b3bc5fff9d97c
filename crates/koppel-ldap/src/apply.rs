//! `apply`: a batch run concurrently over one connection, results in input order. Operations
//! on one account stay in order; memberships of one group are written in one modify.

use std::collections::{BTreeMap, HashMap};

use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use koppel_connectors::target::{Done, Op, TargetError};
use ldap3::{SearchEntry, ldap_escape};

use crate::LdapTarget;
use crate::accounts::Precheck;
use crate::values::{get_ci, single_value};

/// At most this many member values in one modify.
const MEMBERS_PER_MODIFY: usize = 500;
/// At most this many assertions in one OR filter.
const VALUES_PER_FILTER: usize = 100;

type Results = Vec<(usize, Result<Done, TargetError>)>;
/// A task's results and the old DNs of the moves it left for the batch to wait on (op, DN).
type TaskResults = (Results, Vec<(usize, String)>);

impl LdapTarget {
    pub(crate) async fn apply_batch(&self, ops: &[Op]) -> Vec<Result<Done, TargetError>> {
        // References and correlation values of the whole batch, looked up in a few searches.
        let references: Vec<&str> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Create(_) => None,
                Op::Update { reference, .. }
                | Op::SetEnabled { reference, .. }
                | Op::Delete { reference }
                | Op::Grant { reference, .. }
                | Op::Revoke { reference, .. } => Some(reference.as_str()),
            })
            .collect();
        if let Err(e) = self.resolve_many(&references).await {
            return ops.iter().map(|_| Err(e.clone())).collect();
        }
        let mut prechecks = match self.precheck_creates(ops).await {
            Ok(p) => p,
            Err(e) => return ops.iter().map(|_| Err(e.clone())).collect(),
        };

        // Chains: the operations of one account (or one person's creates), in order.
        let mut chains: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            let key = match op {
                Op::Create(r) => match &r.correlation {
                    Some((a, v)) => format!(
                        "create:{}={}",
                        a.to_lowercase(),
                        single_value(v).unwrap_or_default().to_lowercase()
                    ),
                    None => format!("create-person:{}", r.person),
                },
                Op::Update { reference, .. }
                | Op::SetEnabled { reference, .. }
                | Op::Delete { reference }
                | Op::Grant { reference, .. }
                | Op::Revoke { reference, .. } => format!("ref:{}", reference.to_lowercase()),
            };
            chains.entry(key).or_default().push(i);
        }

        // Memberships whose chain holds nothing else that could depend on their order go
        // into one modify per group: (group, grant) → [(op, reference)].
        let mut pooled: BTreeMap<(String, bool), Vec<(usize, String)>> = BTreeMap::new();
        let mut tasks: Vec<BoxFuture<'_, TaskResults>> = Vec::new();
        for (_, chain) in chains {
            let all_memberships = chain
                .iter()
                .all(|i| matches!(ops[*i], Op::Grant { .. } | Op::Revoke { .. }));
            let mut groups: Vec<&str> = chain
                .iter()
                .filter_map(|i| match &ops[*i] {
                    Op::Grant { permission, .. } | Op::Revoke { permission, .. } => {
                        Some(permission.as_str())
                    }
                    _ => None,
                })
                .collect();
            groups.sort();
            groups.dedup();
            if all_memberships && groups.len() == chain.len() {
                for i in chain {
                    if let Op::Grant {
                        reference,
                        permission,
                    }
                    | Op::Revoke {
                        reference,
                        permission,
                    } = &ops[i]
                    {
                        let grant = matches!(ops[i], Op::Grant { .. });
                        pooled
                            .entry((permission.clone(), grant))
                            .or_default()
                            .push((i, reference.clone()));
                    }
                }
                continue;
            }
            let mut chain_prechecks: Vec<Precheck> = chain
                .iter()
                .map(|i| prechecks.remove(i).unwrap_or(Precheck::Unknown))
                .collect();
            tasks.push(Box::pin(async move {
                let mut out = Vec::with_capacity(chain.len());
                let mut moves = Vec::new();
                for (k, i) in chain.iter().enumerate() {
                    // Only the first create of a chain may trust the batch's lookup: a
                    // later one sees what the earlier made.
                    let pre = if k == 0 {
                        std::mem::replace(&mut chain_prechecks[k], Precheck::Unknown)
                    } else {
                        Precheck::Unknown
                    };
                    let mut r = self.run_one(&ops[*i], pre).await;
                    if let Ok((_, Some(old))) = &r {
                        if k + 1 < chain.len() {
                            // This account's next operation may be a membership.
                            if let Err(e) = self.await_refint(std::slice::from_ref(old)).await {
                                r = Err(e);
                            }
                        } else {
                            moves.push((*i, old.clone()));
                        }
                    }
                    let r = r.map(|(done, _)| done);
                    let stop = matches!(&r, Err(e) if e.is_unavailable());
                    out.push((*i, r));
                    if stop {
                        break;
                    }
                }
                (out, moves)
            }));
        }
        for ((permission, grant), members) in pooled {
            for chunk in members.chunks(MEMBERS_PER_MODIFY) {
                let chunk = chunk.to_vec();
                let permission = permission.clone();
                tasks.push(Box::pin(async move {
                    (
                        self.pooled_memberships(&permission, grant, chunk).await,
                        Vec::new(),
                    )
                }));
            }
        }

        let mut results: Vec<Option<Result<Done, TargetError>>> = vec![None; ops.len()];
        let mut moves: Vec<(usize, String)> = Vec::new();
        let mut done = stream::iter(tasks).buffer_unordered(self.settings.concurrency);
        while let Some((batch, moved)) = done.next().await {
            for (i, r) in batch {
                results[i] = Some(r);
            }
            moves.extend(moved);
        }
        // The batch's moves are done once refint has rewritten their memberships: one wait
        // for all of them rather than one per move.
        let old_dns: Vec<String> = moves.iter().map(|(_, d)| d.clone()).collect();
        if let Err(e) = self.await_refint(&old_dns).await {
            for (i, _) in &moves {
                results[*i] = Some(Err(e.clone()));
            }
        }
        // A chain stopped by an unavailable server leaves the rest unavailable too.
        let unavailable = results
            .iter()
            .flatten()
            .find_map(|r| r.as_ref().err().filter(|e| e.is_unavailable()).cloned());
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(unavailable
                        .clone()
                        .unwrap_or_else(|| TargetError::Unavailable {
                            target: self.name.clone(),
                            message: "the operation was not carried out".into(),
                        }))
                })
            })
            .collect()
    }

    /// One operation; with the old DN of an update that moved the account (see
    /// [`LdapTarget::await_refint`]).
    async fn run_one(
        &self,
        op: &Op,
        precheck: Precheck,
    ) -> Result<(Done, Option<String>), TargetError> {
        let done = match op {
            Op::Create(r) => self.create_account(r, precheck).await.map(Done::Created),
            Op::Update { reference, changes } => {
                return self
                    .update_account(reference, changes)
                    .await
                    .map(|moved| (Done::Ok, moved));
            }
            Op::SetEnabled { reference, enabled } => self
                .set_account_enabled(reference, *enabled)
                .await
                .map(|_| Done::Ok),
            Op::Delete { reference } => self.delete_account(reference).await.map(|_| Done::Ok),
            Op::Grant {
                reference,
                permission,
            }
            | Op::Revoke {
                reference,
                permission,
            } => self
                .change_membership(reference, permission, matches!(op, Op::Grant { .. }))
                .await
                .map(|_| Done::Ok),
        };
        done.map(|d| (d, None))
    }

    /// Grants or revokes one group's memberships for several accounts in one modify; when
    /// that fails, one at a time so the error lands on the right operation.
    async fn pooled_memberships(
        &self,
        permission: &str,
        grant: bool,
        members: Vec<(usize, String)>,
    ) -> Results {
        let group = match self.group_dn(permission) {
            Ok(g) => g,
            Err(e) => {
                return members
                    .into_iter()
                    .map(|(i, _)| (i, Err(e.clone())))
                    .collect();
            }
        };
        let mut out = Vec::with_capacity(members.len());
        let mut dns = Vec::new();
        let mut ops = Vec::new();
        for (i, reference) in members {
            match self.resolve(&reference, false).await {
                Ok(Some(dn)) => {
                    dns.push(dn);
                    ops.push((i, reference));
                }
                Ok(None) if grant => out.push((i, Err(self.no_such(&reference)))),
                Ok(None) => out.push((i, Ok(Done::Ok))),
                Err(e) => out.push((i, Err(e))),
            }
        }
        if dns.is_empty() {
            return out;
        }
        match self.members(permission, &group, grant, &dns).await {
            Ok(()) => out.extend(ops.into_iter().map(|(i, _)| (i, Ok(Done::Ok)))),
            Err(e) if e.is_unavailable() || ops.len() == 1 => {
                out.extend(ops.into_iter().map(|(i, _)| (i, Err(e.clone()))))
            }
            Err(_) => {
                for (i, reference) in ops {
                    let r = self.change_membership(&reference, permission, grant).await;
                    out.push((i, r.map(|_| Done::Ok)));
                }
            }
        }
        out
    }

    /// Looks up the correlation values of the batch's creates in a few OR searches. A value
    /// is `Absent` only when every entry found is accounted for by some requested value.
    async fn precheck_creates(&self, ops: &[Op]) -> Result<HashMap<usize, Precheck>, TargetError> {
        // attribute → [(op, value)]
        let mut by_attr: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            if let Op::Create(r) = op
                && let Some((attr, value)) = &r.correlation
                && let Some(v) = single_value(value)
                && crate::values::is_attribute_name(attr)
            {
                by_attr.entry(attr.clone()).or_default().push((i, v));
            }
        }
        let mut out = HashMap::new();
        let attrs = self.settings.account_attributes();
        for (attr, wanted) in by_attr {
            let mut attrs = attrs.clone();
            attrs.push(attr.as_str());
            for chunk in wanted.chunks(VALUES_PER_FILTER) {
                let filter: String = chunk
                    .iter()
                    .map(|(_, v)| format!("({attr}={})", ldap_escape(v.as_str())))
                    .collect();
                let found = self
                    .find_accounts(&format!("(|{filter})"), &attrs)
                    .await
                    .map_err(|e| self.err(e))?;
                let mut matched: HashMap<String, Vec<SearchEntry>> = HashMap::new();
                let mut unattributed = false;
                for entry in found {
                    let values: Vec<String> = get_ci(&entry.attrs, &attr)
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|v| v.to_lowercase())
                        .filter(|v| chunk.iter().any(|(_, w)| w.to_lowercase() == *v))
                        .collect();
                    if values.is_empty() {
                        unattributed = true;
                    }
                    for v in values {
                        matched.entry(v).or_default().push(entry.clone());
                    }
                }
                for (i, v) in chunk {
                    let pre = match matched.get(&v.to_lowercase()) {
                        Some(entries) => Precheck::Found(entries.clone()),
                        None if !unattributed => Precheck::Absent,
                        None => Precheck::Unknown,
                    };
                    out.insert(*i, pre);
                }
            }
        }
        Ok(out)
    }
}
