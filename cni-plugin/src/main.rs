//! `plexus-cni`: the CNI plugin binary.

fn main() {
    std::process::exit(plexus_cni::main_entry());
}
