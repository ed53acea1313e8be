"""``predict(network, input)`` and ``train(...)``: the tutorial's loop, one sample at a time."""


def predict(network, input):
    output = input
    for layer in network:
        output = layer.forward(output)
    return output


def train(
    network, loss, loss_prime, x_train, y_train, epochs=1000, learning_rate=0.01, verbose=True
):
    # Nothing reads the first layer's input gradient: like nn.fit, skip computing it (a layer
    # of ours has `input_grad`; its backward then returns None).
    first = network[0] if network and getattr(network[0], "input_grad", False) else None
    if first is not None:
        first.input_grad = False
    try:
        for e in range(epochs):
            error = 0
            for x, y in zip(x_train, y_train):
                # forward
                output = predict(network, x)

                # error
                error += loss(y, output)

                # backward
                grad = loss_prime(y, output)
                for layer in reversed(network):
                    grad = layer.backward(grad, learning_rate)

            error /= len(x_train)
            if verbose:
                print(f"{e + 1}/{epochs}, error={error}")
    finally:
        if first is not None:
            first.input_grad = True
