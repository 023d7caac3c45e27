// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// The part of ERC20 the escrow uses.
interface IERC20Minimal {
    function balanceOf(address account) external view returns (uint256);
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/**
 * @title Escrow between a payer (the consumer) and payees (compute nodes).
 *
 * Same external interface (functions, return structs, events) as Ocean Protocol's Escrow, so a
 * node can talk to either. Our own implementation, with these differences:
 *   - withdraw reverts when asking more than is available (Ocean skips silently);
 *   - getLocks ANDs its non-zero filters;
 *   - cancelExpiredLock(s) reverts when no expired lock matches;
 *   - no protocol fee: a claim credits the whole amount to the payee.
 *
 * Payer: deposit -> authorize(payee, limits). Payee: createLock(jobId, expiry in seconds from
 * now) -> do the work -> claimLock(actual amount, proof), which releases the rest back to the
 * payer's available funds. After expiry anyone can cancel a lock, releasing it to the payer.
 * Claiming an expired lock cancels it instead (as Ocean does): no Claimed event is emitted.
 */
contract Escrow {
    struct userFunds {
        uint256 available;
        uint256 locked;
    }

    struct auth {
        address payee;
        uint256 maxLockedAmount;
        uint256 currentLockedAmount;
        uint256 maxLockSeconds;
        uint256 maxLockCounts;
        uint256 currentLocks;
    }

    struct lock {
        uint256 jobId;
        address payer;
        address payee;
        uint256 amount;
        uint256 expiry; // absolute timestamp
        address token;
    }

    event Deposit(address indexed payer, address token, uint256 amount);
    event Withdraw(address indexed payer, address token, uint256 amount);
    event Auth(
        address indexed payer,
        address indexed payee,
        uint256 maxLockedAmount,
        uint256 maxLockSeconds,
        uint256 maxLockCounts
    );
    event Lock(address payer, address payee, uint256 jobId, uint256 amount, uint256 expiry, address token);
    event Claimed(
        address indexed payee,
        uint256 jobId,
        address token,
        address indexed payer,
        uint256 amount,
        bytes proof
    );
    event Canceled(address indexed payee, uint256 jobId, address token, address indexed payer, uint256 amount);

    // user -> token -> funds
    mapping(address => mapping(address => userFunds)) private _funds;
    // user -> tokens with available or locked funds; position + 1 (0 = absent)
    mapping(address => address[]) private _userTokens;
    mapping(address => mapping(address => uint256)) private _userTokenPos;
    // payer -> token -> authorizations; payer -> token -> payee -> position + 1
    mapping(address => mapping(address => auth[])) private _auths;
    mapping(address => mapping(address => mapping(address => uint256))) private _authPos;
    // live locks; key = keccak(payer, payee, jobId) -> position + 1
    lock[] private _locks;
    mapping(bytes32 => uint256) private _lockPos;

    uint256 private _entered;

    modifier nonReentrant() {
        require(_entered == 0, "Reentrant call");
        _entered = 1;
        _;
        _entered = 0;
    }

    modifier sameLength(uint256 a, uint256 b) {
        require(a == b, "Invalid input");
        _;
    }

    /* ---------------------------------------------------------------- payer */

    function deposit(address token, uint256 amount) external nonReentrant {
        _deposit(token, amount);
    }

    function depositMultiple(address[] calldata token, uint256[] calldata amount)
        external
        nonReentrant
        sameLength(token.length, amount.length)
    {
        for (uint256 i = 0; i < token.length; i++) {
            _deposit(token[i], amount[i]);
        }
    }

    function withdraw(address[] calldata token, uint256[] calldata amount)
        external
        nonReentrant
        sameLength(token.length, amount.length)
    {
        for (uint256 i = 0; i < token.length; i++) {
            _withdraw(token[i], amount[i]);
        }
    }

    function authorize(
        address token,
        address payee,
        uint256 maxLockedAmount,
        uint256 maxLockSeconds,
        uint256 maxLockCounts
    ) external nonReentrant {
        _authorize(token, payee, maxLockedAmount, maxLockSeconds, maxLockCounts);
    }

    function authorizeMultiple(
        address[] calldata token,
        address[] calldata payee,
        uint256[] calldata maxLockedAmount,
        uint256[] calldata maxLockSeconds,
        uint256[] calldata maxLockCounts
    ) external nonReentrant {
        uint256 n = token.length;
        require(
            payee.length == n && maxLockedAmount.length == n && maxLockSeconds.length == n
                && maxLockCounts.length == n,
            "Invalid input"
        );
        for (uint256 i = 0; i < n; i++) {
            _authorize(token[i], payee[i], maxLockedAmount[i], maxLockSeconds[i], maxLockCounts[i]);
        }
    }

    /* ---------------------------------------------------------------- payee */

    /// @param expiry lock duration in seconds from now (at most the authorization's maxLockSeconds)
    function createLock(uint256 jobId, address token, address payer, uint256 amount, uint256 expiry)
        external
        nonReentrant
    {
        _createLock(jobId, token, payer, amount, expiry);
    }

    function createLocks(
        uint256[] calldata jobId,
        address[] calldata token,
        address[] calldata payer,
        uint256[] calldata amount,
        uint256[] calldata expiry
    ) external nonReentrant {
        uint256 n = jobId.length;
        require(
            token.length == n && payer.length == n && amount.length == n && expiry.length == n, "Invalid input"
        );
        for (uint256 i = 0; i < n; i++) {
            _createLock(jobId[i], token[i], payer[i], amount[i], expiry[i]);
        }
    }

    function claimLock(uint256 jobId, address token, address payer, uint256 amount, bytes calldata proof)
        external
        nonReentrant
    {
        _claimLock(jobId, token, payer, amount, proof);
    }

    function claimLocks(
        uint256[] calldata jobId,
        address[] calldata token,
        address[] calldata payer,
        uint256[] calldata amount,
        bytes[] calldata proof
    ) external nonReentrant {
        _checkClaimInput(jobId.length, token.length, payer.length, amount.length, proof.length);
        for (uint256 i = 0; i < jobId.length; i++) {
            _claimLock(jobId[i], token[i], payer[i], amount[i], proof[i]);
        }
    }

    /// Claims, then withdraws everything the payee has available in that token.
    function claimLockAndWithdraw(
        uint256 jobId,
        address token,
        address payer,
        uint256 amount,
        bytes calldata proof
    ) external nonReentrant {
        _claimLock(jobId, token, payer, amount, proof);
        _withdrawAll(token);
    }

    function claimLocksAndWithdraw(
        uint256[] calldata jobId,
        address[] calldata token,
        address[] calldata payer,
        uint256[] calldata amount,
        bytes[] calldata proof
    ) external nonReentrant {
        _checkClaimInput(jobId.length, token.length, payer.length, amount.length, proof.length);
        for (uint256 i = 0; i < jobId.length; i++) {
            _claimLock(jobId[i], token[i], payer[i], amount[i], proof[i]);
        }
        for (uint256 i = 0; i < token.length; i++) {
            _withdrawAll(token[i]);
        }
    }

    /* ---------------------------------------------------------------- anyone */

    /// Releases every expired lock matching the filters (jobId 0 / zero address = any) to its payer.
    function cancelExpiredLock(uint256 jobId, address token, address payer, address payee) external nonReentrant {
        require(_cancelExpired(jobId, token, payer, payee) > 0, "No expired lock");
    }

    function cancelExpiredLocks(
        uint256[] calldata jobId,
        address[] calldata token,
        address[] calldata payer,
        address[] calldata payee
    ) external nonReentrant {
        uint256 n = jobId.length;
        require(token.length == n && payer.length == n && payee.length == n, "Invalid input");
        for (uint256 i = 0; i < n; i++) {
            require(_cancelExpired(jobId[i], token[i], payer[i], payee[i]) > 0, "No expired lock");
        }
    }

    /* ---------------------------------------------------------------- views */

    function getFunds(address token) external view returns (userFunds memory) {
        return _funds[msg.sender][token];
    }

    function getUserFunds(address payer, address token) external view returns (userFunds memory) {
        return _funds[payer][token];
    }

    function getUserTokens(address user) external view returns (address[] memory) {
        return _userTokens[user];
    }

    /// token and payer required; payee zero = any.
    function getAuthorizations(address token, address payer, address payee)
        external
        view
        returns (auth[] memory result)
    {
        require(payer != address(0), "Invalid payer");
        require(token != address(0), "Invalid token");
        auth[] storage all = _auths[payer][token];
        if (payee == address(0)) {
            return all;
        }
        uint256 pos = _authPos[payer][token][payee];
        result = new auth[](pos == 0 ? 0 : 1);
        if (pos != 0) {
            result[0] = all[pos - 1];
        }
    }

    /// Live locks; each zero-address filter means any, the others must all match.
    function getLocks(address token, address payer, address payee) external view returns (lock[] memory result) {
        uint256 n = _locks.length;
        uint256 size = 0;
        for (uint256 i = 0; i < n; i++) {
            if (_lockMatches(_locks[i], 0, token, payer, payee)) size++;
        }
        result = new lock[](size);
        size = 0;
        for (uint256 i = 0; i < n; i++) {
            if (_lockMatches(_locks[i], 0, token, payer, payee)) result[size++] = _locks[i];
        }
    }

    /* ---------------------------------------------------------------- internals */

    function _deposit(address token, uint256 amount) internal {
        require(token != address(0), "Invalid token");
        require(amount > 0, "Invalid amount");
        require(token.code.length > 0, "Token is not a contract");
        uint256 before = IERC20Minimal(token).balanceOf(address(this));
        _callToken(token, abi.encodeCall(IERC20Minimal.transferFrom, (msg.sender, address(this), amount)));
        require(IERC20Minimal(token).balanceOf(address(this)) - before == amount, "Transfer amount mismatch");
        _funds[msg.sender][token].available += amount;
        _trackToken(msg.sender, token);
        emit Deposit(msg.sender, token, amount);
    }

    function _withdraw(address token, uint256 amount) internal {
        userFunds storage f = _funds[msg.sender][token];
        require(f.available >= amount, "Insufficient available funds");
        f.available -= amount;
        _trackToken(msg.sender, token);
        emit Withdraw(msg.sender, token, amount);
        _callToken(token, abi.encodeCall(IERC20Minimal.transfer, (msg.sender, amount)));
    }

    function _withdrawAll(address token) internal {
        uint256 amount = _funds[msg.sender][token].available;
        if (amount > 0) _withdraw(token, amount);
    }

    function _authorize(
        address token,
        address payee,
        uint256 maxLockedAmount,
        uint256 maxLockSeconds,
        uint256 maxLockCounts
    ) internal {
        require(token != address(0), "Invalid token");
        require(payee != address(0), "Invalid payee");
        uint256 pos = _authPos[msg.sender][token][payee];
        if (pos == 0) {
            _auths[msg.sender][token].push(auth(payee, maxLockedAmount, 0, maxLockSeconds, maxLockCounts, 0));
            _authPos[msg.sender][token][payee] = _auths[msg.sender][token].length;
        } else {
            auth storage a = _auths[msg.sender][token][pos - 1];
            a.maxLockedAmount = maxLockedAmount;
            a.maxLockSeconds = maxLockSeconds;
            a.maxLockCounts = maxLockCounts;
        }
        emit Auth(msg.sender, payee, maxLockedAmount, maxLockSeconds, maxLockCounts);
    }

    function _createLock(uint256 jobId, address token, address payer, uint256 amount, uint256 expiry) internal {
        require(payer != address(0), "Invalid payer");
        require(token != address(0), "Invalid token");
        require(amount > 0, "Invalid amount");
        require(jobId > 0, "Invalid jobId");
        uint256 pos = _authPos[payer][token][msg.sender];
        require(pos != 0, "No auth found");
        auth storage a = _auths[payer][token][pos - 1];
        require(expiry <= a.maxLockSeconds, "Expiry too high");
        require(a.currentLockedAmount + amount <= a.maxLockedAmount, "Exceeds maxLockedAmount");
        require(a.currentLocks < a.maxLockCounts, "Exceeds maxLockCounts");
        userFunds storage f = _funds[payer][token];
        require(f.available >= amount, "Payer does not have enough funds");
        bytes32 key = _lockKey(payer, msg.sender, jobId);
        require(_lockPos[key] == 0, "JobId already exists");

        a.currentLockedAmount += amount;
        a.currentLocks += 1;
        f.available -= amount;
        f.locked += amount;
        _locks.push(lock(jobId, payer, msg.sender, amount, block.timestamp + expiry, token));
        _lockPos[key] = _locks.length;
        emit Lock(payer, msg.sender, jobId, amount, expiry, token);
    }

    function _claimLock(uint256 jobId, address token, address payer, uint256 amount, bytes calldata proof)
        internal
    {
        require(payer != address(0), "Invalid payer");
        require(token != address(0), "Invalid token");
        require(jobId > 0, "Invalid jobId");
        uint256 pos = _lockPos[_lockKey(payer, msg.sender, jobId)];
        require(pos != 0 && _locks[pos - 1].token == token, "Lock not found");
        lock memory l = _locks[pos - 1];
        if (l.expiry < block.timestamp) {
            // too late: the lock goes back to the payer, nothing is paid
            _release(pos - 1, l.amount);
            emit Canceled(l.payee, l.jobId, l.token, l.payer, l.amount);
            return;
        }
        require(amount <= l.amount, "Amount too high");
        _release(pos - 1, l.amount - amount);
        _funds[msg.sender][token].available += amount;
        _trackToken(msg.sender, token);
        emit Claimed(msg.sender, jobId, token, payer, amount, proof);
    }

    function _cancelExpired(uint256 jobId, address token, address payer, address payee)
        internal
        returns (uint256 count)
    {
        uint256 i = 0;
        while (i < _locks.length) {
            lock memory l = _locks[i];
            if (l.expiry < block.timestamp && _lockMatches(l, jobId, token, payer, payee)) {
                _release(i, l.amount); // moves the last lock into slot i: look at i again
                emit Canceled(l.payee, l.jobId, l.token, l.payer, l.amount);
                count++;
            } else {
                i++;
            }
        }
    }

    /// Removes the lock at index, giving `refund` of it back to the payer's available funds
    /// (the rest leaves the payer's locked funds: the caller credits it elsewhere).
    function _release(uint256 index, uint256 refund) internal {
        lock memory l = _locks[index];
        auth storage a = _auths[l.payer][l.token][_authPos[l.payer][l.token][l.payee] - 1];
        a.currentLockedAmount -= l.amount;
        a.currentLocks -= 1;
        userFunds storage f = _funds[l.payer][l.token];
        f.locked -= l.amount;
        f.available += refund;
        _trackToken(l.payer, l.token);

        delete _lockPos[_lockKey(l.payer, l.payee, l.jobId)];
        uint256 last = _locks.length - 1;
        if (index != last) {
            lock memory moved = _locks[last];
            _locks[index] = moved;
            _lockPos[_lockKey(moved.payer, moved.payee, moved.jobId)] = index + 1;
        }
        _locks.pop();
    }

    function _lockMatches(lock memory l, uint256 jobId, address token, address payer, address payee)
        internal
        pure
        returns (bool)
    {
        return (jobId == 0 || jobId == l.jobId) && (token == address(0) || token == l.token)
            && (payer == address(0) || payer == l.payer) && (payee == address(0) || payee == l.payee);
    }

    function _lockKey(address payer, address payee, uint256 jobId) internal pure returns (bytes32) {
        return keccak256(abi.encode(payer, payee, jobId));
    }

    /// Keeps getUserTokens to the tokens the user has available or locked funds in.
    function _trackToken(address user, address token) internal {
        userFunds storage f = _funds[user][token];
        uint256 pos = _userTokenPos[user][token];
        bool has = f.available > 0 || f.locked > 0;
        if (has && pos == 0) {
            _userTokens[user].push(token);
            _userTokenPos[user][token] = _userTokens[user].length;
        } else if (!has && pos != 0) {
            address[] storage list = _userTokens[user];
            address lastToken = list[list.length - 1];
            list[pos - 1] = lastToken;
            _userTokenPos[user][lastToken] = pos;
            list.pop();
            delete _userTokenPos[user][token];
        }
    }

    /// ERC20 call that accepts tokens returning nothing and rejects those returning false.
    function _callToken(address token, bytes memory data) internal {
        (bool ok, bytes memory ret) = token.call(data);
        require(ok && (ret.length == 0 || abi.decode(ret, (bool))), "Token transfer failed");
    }

    function _checkClaimInput(uint256 n, uint256 t, uint256 p, uint256 a, uint256 pr) internal pure {
        require(t == n && p == n && a == n && pr == n, "Invalid input");
    }
}
