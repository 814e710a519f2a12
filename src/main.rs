fn main() {
    std::process::exit(semcon::cli::main());
}
