"""Fixture models for the mutation tests, one per rewrite case (all take digits-shaped input)."""

HEAD = "import torch\nfrom torch import nn\n\n\n"

LITERAL = HEAD + '''class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, out_shape[0])

    def forward(self, x):
        x = self.conv2(torch.relu(self.bn(self.conv(x))))
        return self.fc(self.pool(x).flatten(1))
'''

KEYWORD = HEAD + '''class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.conv = nn.Conv2d(in_channels=in_shape[1], out_channels=8, kernel_size=3)
        self.fc = nn.Linear(in_features=8, out_features=out_shape[0])

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))
'''

SEQUENTIAL = HEAD + '''class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3),  # stem
            nn.ReLU(),
            nn.Conv2d(8, 16, 3),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, out_shape[0]),
        )

    def forward(self, x):
        return self.body(x)
'''

DEFAULT = HEAD + '''class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device, width=8):
        super().__init__()
        self.conv = nn.Conv2d(in_shape[1], width, 3, padding=1)
        self.fc = nn.Linear(width, out_shape[0])

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).amax((2, 3)))
'''

LOOP = HEAD + '''class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        layers, c = [], in_shape[1]
        for w in (8, 16):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, out_shape[0])

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))
'''

GROUPED = HEAD + '''class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.stem = nn.Conv2d(in_shape[1], 8, 1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 16, 1, groups=2)
        self.fc = nn.Linear(16, out_shape[0])

    def forward(self, x):
        return self.fc(self.pw(self.dw(self.stem(x))).mean((2, 3)))
'''

RESIDUAL = HEAD + '''class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x)) + x


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.stem = nn.Conv2d(in_shape[1], 8, 3, padding=1)
        self.block = Block(8)
        self.fc = nn.Linear(8, out_shape[0])

    def forward(self, x):
        return self.fc(self.block(self.stem(x)).mean((2, 3)))
'''

FLATTEN = HEAD + '''class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, out_shape[0])

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))
'''

UNTRACEABLE = HEAD + '''class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, out_shape[0])

    def forward(self, x):
        x = torch.relu(self.conv(x))
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            x = x * 2
        return self.fc(x.mean((2, 3)))
'''

ATTENTION = HEAD + '''class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.embed = nn.Linear(1, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.rnn = nn.GRU(16, 12, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(24, out_shape[0])

    def forward(self, x):
        x = self.embed(x.flatten(2).transpose(1, 2))
        x = self.norm(x + self.attn(x, x, x)[0])
        return self.fc(self.rnn(x)[0].mean(1))
'''
