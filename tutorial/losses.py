"""The tutorial's losses, each ``(y_true, y_pred)``: ``nn.losses``'s own (mean over every value;
the derivatives divide by the number of values)."""

from nn.losses import binary_cross_entropy, binary_cross_entropy_prime, mse, mse_prime

__all__ = ["mse", "mse_prime", "binary_cross_entropy", "binary_cross_entropy_prime"]
