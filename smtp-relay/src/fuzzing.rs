//! Entry point for the fuzz targets (crate `mailcred-fuzz`): one session over any byte
//! stream, without a listener, so a fuzzer can drive the real command loop in memory.
//! Not part of the supported API.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::server::SmtpRelay;
use crate::session::Session;
use crate::upstream::Upstream;

impl<U: Upstream> SmtpRelay<U> {
    /// Serves one application connection on `io` until QUIT, EOF or a timeout.
    pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(&self, io: S) {
        Session::new(&self.shared, io, CancellationToken::new())
            .run()
            .await;
    }
}
