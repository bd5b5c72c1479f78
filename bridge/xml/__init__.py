"""XML security: refusing dangerous documents, verifying and making signatures, decrypting assertions.

The lowest service layer: imports only the ground modules (``bridge.errors``).
"""
