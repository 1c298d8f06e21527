//! Config changes reach this node: the admin API's writes on this node and, through the
//! store's notifications, every other node's.

use std::sync::Arc;

use super::governance::GovRuntime;

impl GovRuntime {
    /// Reloads whenever the admin API (or another node, through the store) changes something.
    pub async fn watch_changes(self: Arc<Self>) {
        let mut subscription = self.store.subscribe_config_changes().await.ok();
        loop {
            match subscription.as_mut() {
                Some(sub) => {
                    tokio::select! {
                        () = self.changed.notified() => {}
                        change = sub.recv() => if change.is_none() { subscription = self.store.subscribe_config_changes().await.ok(); }
                    }
                }
                None => self.changed.notified().await,
            }
            if let Err(e) = self.reload().await {
                tracing::error!(error = %e, "governance reload failed; keeping the previous snapshot");
            }
        }
    }
}
