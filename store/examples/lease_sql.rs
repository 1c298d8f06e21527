//! Prints the share request's statements for pgbench (perf/leases.sh): `$n` parameters become
//! pgbench variables `:pn`, the second statement's `$5` (the node id) becomes `:node`.

fn main() {
    let [acquire, add_share] = store::leases::acquire_statements();
    let vars = |sql: &str, node_at: Option<&str>| {
        let mut out = sql.to_owned();
        for n in (1..=9).rev() {
            let var = match node_at {
                Some(node) if n == 5 => node.to_owned(),
                _ => format!(":p{n}"),
            };
            out = out.replace(&format!("${n}"), &var);
        }
        out
    };
    println!("{};", vars(acquire, None));
    println!("{};", vars(add_share, Some(":node")));
}
