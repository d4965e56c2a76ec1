//! RESP2 over any `AsyncRead + AsyncWrite` stream: codec, server loop, client.
