//! Prints the MailCredential CustomResourceDefinition as YAML (`crds/mailcredential.yaml`).

fn main() -> std::process::ExitCode {
    match mailcred_core::crd::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crdgen: cannot serialize the CRD: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
