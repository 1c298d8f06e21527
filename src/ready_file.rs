//! `serve --ready-file PATH`: once every listener is bound and the node takes traffic, the
//! node writes `{"data":"IP:PORT","control":"IP:PORT","pid":N}` to PATH.
//!
//! Why a file, and not a line on stdout or the log: whoever starts ringgate with port 0 (the
//! test harnesses, scripts, a supervisor) needs the ports it got, and needs to know when it is
//! ready. Log wording is for people and changes; a line on stdout would tie the reader to a
//! pipe it must keep draining for the life of the process (a full pipe blocks the writer).
//! A file is read when convenient, by any tool (`until [ -f PATH ]`, `jq`), and since it is
//! written to `PATH.tmp` and renamed into place, it either does not exist or is complete.
//! Its existence is the readiness signal, so the reader needs no `/health` polling; it is
//! removed when the node starts to drain. A file left by a killed process is stale: delete
//! PATH before starting the node (the `pid` field tells whose file it is).

use std::net::SocketAddr;
use std::path::Path;

/// Writes the ready file atomically (a temporary file beside it, then a rename).
pub fn write(path: &Path, data: SocketAddr, control: SocketAddr) -> std::io::Result<()> {
    let contents = serde_json::json!({
        "data": data.to_string(),
        "control": control.to_string(),
        "pid": std::process::id(),
    });
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{contents}\n"))?;
    std::fs::rename(&tmp, path)
}
