//! `kubectl devenv` and `devenv-webhook` against the real control plane (no node: pods
//! stay Pending): install / status / uninstall, what `create` makes and what the
//! webhook does to the pods the controllers create, Pod Security admission as the judge
//! of the mutation, denials, the webhook's outage, scaling, stop / start, delete and
//! purge, list / get, secrets, and the errors a user sees.
//!
//!     cargo build --workspace --bins
//!     cargo test -p devenv-e2e --test e2e_control_plane -- --test-threads=1 --nocapture
//!
//! One test binary, one cluster ([`devenv_e2e::shared`], stopped when the binary exits),
//! with a module per topic:
//!
//! | module | what |
//! | --- | --- |
//! | [`install`] | install / status / uninstall, and installing again right after |
//! | [`create`] | what `create` makes; every mutation on the stored pods |
//! | [`pod_security`] | Pod Security admission as the judge of the mutation |
//! | [`denials`] | forbidden pods and debug containers denied naming the field; no claims left |
//! | [`outage`] | the webhook down blocks only workspace pods, leaves nothing half made |
//! | [`scale`] | scale / stop / start keep every claim; no conflicts |
//! | [`delete`] | delete keeps claims, create reuses them, purge removes them |
//! | [`portal`] | `ui`: the table live from the watches, start from the page, strangers refused |
//! | [`grow`] | `scale --workspace-size` grows every claim, keeps the pods, refuses what cannot grow |
//! | [`list_get`] | list / get report the real state |
//! | [`snapshot`] | `snapshot` and `restore --from-snapshot` on the real CSI snapshot CRDs; only the owner's snapshots fill a workspace |
//! | [`secrets`] | secret values stored, never printed nor logged |
//! | [`errors`] | the errors a user sees, and their exit codes |
//! | [`tenant`] | `tenant add/list/remove` as minted users: one tenant's user cannot see or read another's |
//! | [`fixture`] | the webhook fixture itself |
//!
//! The plugin runs through the real `kubectl` (plugin discovery on PATH, see
//! `devenv_e2e::plugin`), the webhook as a process on loopback registered with
//! `install --webhook-url` (see `devenv_e2e::webhook`). Each test works in its own
//! namespace (PodSecurity `restricted` enforced). The webhook configurations are
//! cluster-wide, so the tests take a lock ([`devenv_e2e::serial::serial`]) and run one at
//! a time even without `--test-threads=1`; each one installs its own webhook process (or
//! uninstalls) first, so none depends on what an earlier one left.

mod create;
mod delete;
mod denials;
mod errors;
mod fixture;
mod grow;
mod install;
mod isolation;
mod list_get;
mod outage;
mod pod_security;
mod portal;
mod scale;
mod secrets;
mod snapshot;
mod tenant;
